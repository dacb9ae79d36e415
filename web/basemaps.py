"""The basemaps the map page offers in its layer switcher (issue 11), built from the settings.

Three public tile services, each with its datum:

- ``osm``: OpenStreetMap (``web.osm_url_template``), WGS-84; attribution required by its
  tile usage policy.
- ``tianditu``: 天地图, the national platform; vector roads ``vec_w`` with the annotation
  layer ``cva_w`` (place names) over it, Web Mercator, CGCS2000, which equals WGS-84 to a few
  centimetres, so positions are drawn unshifted. Needs a browser key (``web.tianditu_key``);
  without one the page names the missing setting instead of loading tiles.
- ``amap``: 高德, GCJ-02: the page converts positions, tracks and geofences for display only
  (:mod:`web.coords`, ``web/static/coords.js``).

``web.tile_url_template`` (with ``web.tile_crs`` and ``web.tile_attribution``), the older single
basemap setting, is offered first as ``custom`` when set.

The page (``web/static/basemaps.js``) falls back to the plain background with a note when the
chosen basemap's tiles cannot load (offline, blocked, wrong key). The CSP's ``img-src`` lists
the hosts of exactly these templates (:func:`tile_sources`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from gps_monitor.config import WebSettings

Crs = Literal["wgs84", "gcj02"]

OSM_ATTRIBUTION = (
    '&copy; <a href="https://www.openstreetmap.org/copyright">OpenStreetMap</a> contributors'
)
TIANDITU_ATTRIBUTION = '&copy; <a href="https://www.tianditu.gov.cn/">天地图</a>'
AMAP_ATTRIBUTION = '&copy; <a href="https://www.amap.com/">高德地图</a>'


@dataclass(frozen=True, slots=True)
class Basemap:
    """One entry of the layer switcher.

    ``layers`` are Leaflet tile URL templates drawn bottom to top (天地图: roads, then names);
    ``options`` fill the template's other placeholders ({tk}, {layer} is per layer);
    ``attribution`` is HTML (escaped already where it came from a setting).
    """

    id: str
    crs: Crs
    layers: tuple[str, ...]
    attribution: str
    subdomains: str = "abc"
    max_zoom: int = 18
    missing: str | None = None  # why it cannot load (a setting to set), shown instead of tiles
    options: dict[str, str] = field(default_factory=dict)


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    )


def basemaps(web: WebSettings) -> list[Basemap]:
    """The basemaps to offer, in switcher order."""
    out: list[Basemap] = []
    if web.tile_url_template:
        out.append(
            Basemap(
                "custom",
                web.tile_crs,
                (web.tile_url_template,),
                _escape(web.tile_attribution),
                max_zoom=web.tile_max_zoom,
            )
        )
    for name in web.basemaps:
        if name == "osm":
            out.append(Basemap("osm", "wgs84", (web.osm_url_template,), OSM_ATTRIBUTION, "abc", 19))
        elif name == "tianditu":
            template = web.tianditu_url_template
            out.append(
                Basemap(
                    "tianditu",
                    "wgs84",
                    (template.replace("{layer}", "vec"), template.replace("{layer}", "cva")),
                    TIANDITU_ATTRIBUTION,
                    "01234567",
                    18,
                    None if web.tianditu_key else "GPS_MONITOR_WEB_TIANDITU_KEY",
                    {"tk": web.tianditu_key or ""},
                )
            )
        elif name == "amap":
            out.append(
                Basemap("amap", "gcj02", (web.amap_url_template,), AMAP_ATTRIBUTION, "1234", 18)
            )
    return out


def default_basemap(web: WebSettings, offered: list[Basemap]) -> str | None:
    """The id shown first: ``web.basemap_default`` when offered, else custom, else amap for
    ``tile_crs=gcj02``, else the first offered; None when nothing is offered."""
    ids = [b.id for b in offered]
    if web.basemap_default in ids:
        return web.basemap_default
    if "custom" in ids:
        return "custom"
    if web.tile_crs == "gcj02" and "amap" in ids:
        return "amap"
    return ids[0] if ids else None


def page_config(web: WebSettings) -> dict[str, Any]:
    """The basemap part of ``GET /api/config``: ``basemaps`` (list of :class:`Basemap` as
    dicts), ``basemap_default`` and ``tile_crs`` (the default basemap's datum)."""
    offered = basemaps(web)
    chosen = default_basemap(web, offered)
    crs = next((b.crs for b in offered if b.id == chosen), web.tile_crs)
    return {
        "basemaps": [asdict(b) for b in offered],
        "basemap_default": chosen,
        "tile_crs": crs,
    }


def tile_source(tile_url_template: str | None) -> str | None:
    """The CSP source (``scheme://host[:port]``) the tiles of a template load from, or None.

    A host label holding a placeholder (``{s}.tile.openstreetmap.org``,
    ``webrd0{s}.is.autonavi.com``) becomes ``*`` with the labels left of it:
    ``https://*.tile.openstreetmap.org``.
    """
    if not tile_url_template:
        return None
    parts = urlsplit(tile_url_template)
    if not parts.scheme or not parts.netloc:
        return None
    labels = parts.netloc.split(".")
    templated = [i for i, label in enumerate(labels) if "{" in label]
    if templated:
        labels = ["*", *labels[max(templated) + 1 :]]
    return f"{parts.scheme}://{'.'.join(labels)}"


def tile_sources(web: WebSettings) -> list[str]:
    """The CSP ``img-src`` sources of every offered basemap, without repeats."""
    sources = (tile_source(layer) for b in basemaps(web) for layer in b.layers)
    return list(dict.fromkeys(s for s in sources if s))
