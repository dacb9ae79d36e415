"""One router per resource; :data:`web.app.ROUTERS` lists them."""
