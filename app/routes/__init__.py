"""One module per resource; ``logpx.app.main`` includes their routers."""
