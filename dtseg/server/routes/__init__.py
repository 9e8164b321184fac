"""The built-in route families, one folder each (``routes.py`` + ``schemas.py``), registered
through ``dtseg_register_route_families`` as a plugin's would be. Their order is the order of
the app's routes and of the OpenAPI document."""

from __future__ import annotations

from dtseg.hookspecs import RegisterRouteFamily, hookimpl
from dtseg.server.families import RouteFamily


@hookimpl
def dtseg_register_route_families(register: RegisterRouteFamily) -> None:
    from dtseg.server.routes.labelstudio import routes as labelstudio
    from dtseg.server.routes.page import routes as page
    from dtseg.server.routes.sam import routes as sam
    from dtseg.server.routes.sam2 import routes as sam2
    from dtseg.server.routes.sam3 import routes as sam3
    from dtseg.server.routes.segment import routes as segment
    from dtseg.server.routes.server import routes as server

    register("sam", RouteFamily(sam.router))  # Roboflow's /sam/*: any model
    register("sam2", RouteFamily(sam2.router, sam2.SAM2))  # Roboflow's /sam2/*: a SAM 2 model
    register("sam3", RouteFamily(sam3.router, sam3.SAM3))  # Roboflow's /sam3/*: a SAM 3 model
    register("segment", RouteFamily(segment.router))  # /segment: pipeline configs
    register("labelstudio", RouteFamily(labelstudio.router))  # the Label Studio ML backend
    # /, /static, /fetch_image, /export, /everything
    register("page", RouteFamily(page.router, install=page.install_static))
    register("server", RouteFamily(server.router))  # /healthz, /info
