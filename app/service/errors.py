"""Domain errors raised by the service; app.server maps them to HTTP statuses in one place."""


class ServiceError(Exception):
    status = 500


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class Invalid(ServiceError):
    status = 400
