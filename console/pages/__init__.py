"""The console's pages, one module each: `routes(console)` returns its Starlette routes."""
