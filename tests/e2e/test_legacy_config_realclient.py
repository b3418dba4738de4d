"""A headscale 0.22-era tutorial deployment, unchanged: its config.yaml (ip_prefixes, db_type,
db_path, dns_config, acl_policy_path, ...) and its YAML ACL naming users without '@'
(namespace style). Real clients check what the ACL says: guest nodes reach each other but not
the default user's node, and the default user's node reaches everything."""

from __future__ import annotations

from tests.e2e.harness import SERVER_IP, Netns, Server, TsnetNode, fetch, proxy_site, tempdir, wait_for

DERP_HTTP = {"TS_DEBUG_USE_DERP_HTTP": "1"}

# The 0.22 example config's keys and layout; only addresses and paths are this machine's.
TUTORIAL_CONFIG = """\
server_url: http://{ip}:8080
listen_addr: 0.0.0.0:8080
metrics_listen_addr: 127.0.0.1:9090
grpc_listen_addr: 127.0.0.1:50443
grpc_allow_insecure: false
private_key_path: {d}/private.key
noise:
  private_key_path: {d}/noise_private.key
ip_prefixes:
  - fd7a:115c:a1e0::/48
  - 100.64.0.0/10
derp:
  server:
    enabled: true
    region_id: 999
    region_code: "headscale"
    region_name: "Headscale Embedded DERP"
    stun_listen_addr: "0.0.0.0:3478"
  urls: []
  paths: []
  auto_update_enabled: true
  update_frequency: 24h
disable_check_updates: false
ephemeral_node_inactivity_timeout: 30m
node_update_check_interval: 10s
db_type: sqlite3
db_path: {d}/db.sqlite
acme_url: https://acme-v02.api.letsencrypt.org/directory
acme_email: ""
tls_letsencrypt_hostname: ""
tls_letsencrypt_cache_dir: {d}/cache
tls_letsencrypt_challenge_type: HTTP-01
tls_letsencrypt_listen: ":http"
tls_cert_path: ""
tls_key_path: ""
log:
  format: text
  level: info
acl_policy_path: {d}/acl.yaml
dns_config:
  override_local_dns: true
  nameservers:
    - 1.1.1.1
  domains: []
  magic_dns: true
  base_domain: example.com
unix_socket: {d}/headscale.sock
unix_socket_permission: "0770"
logtail:
  enabled: false
randomize_client_port: false
"""

TUTORIAL_ACL = """\
# users are namespaces: no '@'
acls:
  - action: accept
    src:
      - default
    dst:
      - "*:*"
  - action: accept
    src:
      - guest
    dst:
      - "guest:*"
"""


def caddyfile(url: str, state, keys: dict[str, str]) -> str:
    nodes = "".join(
        f"\t\t{name} {{\n\t\t\thostname {name}\n\t\t\tauth_key {key}\n\t\t}}\n" for name, key in keys.items()
    )
    sites = "".join(f":80 {{\n\tbind tailscale/{name}\n\trespond \"hello from {name}\"\n}}\n" for name in keys)
    return (
        "{\n\tadmin off\n\tauto_https off\n\ttailscale {\n"
        f"\t\tcontrol_url {url}\n\t\tstate_dir {state}\n{nodes}\t}}\n}}\n" + sites
        + proxy_site(18081, "http://guestb:80", via="guesta")
        + proxy_site(18082, "http://home:80", via="guesta")
        + proxy_site(18083, "http://guesta:80", via="home")
    )


def test_tutorial_config_and_yaml_acl_run_unchanged():
    with tempdir() as work, Netns() as ns:
        srv = Server(ns, work / "srv")
        srv.config_path.write_text(TUTORIAL_CONFIG.format(ip=SERVER_IP, d=srv.dir))
        (srv.dir / "acl.yaml").write_text(TUTORIAL_ACL)
        check = srv.cli("configtest")
        assert "db_path was renamed to database.sqlite.path" in check.stderr
        assert '"guest" is read as the user guest@' in check.stderr
        srv.start()
        node = TsnetNode(ns, work, "legacy")
        try:
            keys = {"home": srv.create_key("default"), "guesta": srv.create_key("guest"),
                    "guestb": srv.create_key("guest")}
            node.run_caddyfile(caddyfile(srv.url, node.state, keys), **DERP_HTTP)
            wait_for(lambda: sum(n["online"] for n in srv.nodes()) == 3, 60, what="three nodes online")
            assert (srv.dir / "db.sqlite").exists()  # db_path was used
            assert all(n["ipAddresses"][0].startswith("100.64.") for n in srv.nodes())

            wait_for(lambda: "hello from guestb" in fetch(ns, 18081), 60, what="guest reaches guest")
            wait_for(lambda: "hello from guesta" in fetch(ns, 18083), 60, what="default reaches guest")
            assert "hello from home" not in fetch(ns, 18082)  # guest -> default is not allowed
            log = srv.log_text()
            assert "acl_policy_path was renamed to policy.path" in log
            assert 'write "default@"' in log
        finally:
            node.stop()
            srv.stop()
