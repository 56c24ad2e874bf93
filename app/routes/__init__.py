"""One module per resource; ``app.main`` includes their routers."""
