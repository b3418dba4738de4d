"""Map responses: what a node learns about itself, its peers and the tailnet."""
