"""The HTTP face of the gateway: ORS routes, admin API, operations endpoints and the web client
(the application itself: gateway.http.app.create_app)."""
