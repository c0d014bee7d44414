"""Interactive Vega-Lite charts in HTML that opens offline: one JavaScript bundle per page or folder.

The bundle (Vega, Vega-Lite and vega-embed, ~0.9 MB, from the `vl-convert-python` package, so
no network and no CDN) is

- inlined ONCE in report.html, where every chart's data sets are pooled too: a data set that
  several charts use (same Altair hash) is stored once, column-wise, with floats cut to
  `SIGNIFICANT` digits (`PageCharts`);
- written once as `vega-bundle.js` in a chart folder, which each per-chart `NAME.html` loads
  with `<script src>` (`write_bundle`, `chart_html`).

Each embedded chart's Vega view is kept in `window.ddrsaViews[name]` so the page can set its
signals (the leaderboard highlights its selected configuration in the parallel coordinates);
Charts are drawn when they come within 600 px of the viewport (the first screen, headline and
leaderboard, does not wait for them); `window.ddrsaRenderAll()` draws the rest at once.
`window.ddrsaChartsDone` becomes true once every chart has rendered (or failed:
`window.ddrsaChartErrors` lists those), `window.ddrsaChartsMs` is then ms since navigation start.
"""

from __future__ import annotations

import json
import math
import os
from functools import lru_cache
from pathlib import Path

from reports.tables import write_atomic

BUNDLE_FILE = "vega-bundle.js"
SIGNIFICANT = 4  # significant digits of floats in the report's pooled data sets
EMBED_OPTIONS = {"actions": {"export": True, "source": False, "compiled": False, "editor": False}, "renderer": "canvas"}


def vl_version() -> str | None:
    """vl-convert's name for the Vega-Lite version Altair targets ('v6_4'), None = its latest."""
    import altair as alt
    import vl_convert as vlc

    name = "v" + "_".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return name if name in vlc.get_vegalite_versions() else None


@lru_cache(maxsize=1)
def bundle_js() -> str:
    """Vega + Vega-Lite + vega-embed as one script defining window.vega/vegaLite/vegaEmbed (~0.9 MB)."""
    import vl_convert as vlc

    version = vl_version()
    return vlc.javascript_bundle(vl_version=version.replace("_", ".") if version else None)


def script_json(value) -> str:
    """JSON safe inside a <script> element (no '</script>', no U+2028/2029 line breaks)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def write_bundle(directory: str | os.PathLike) -> Path:
    """Write `directory/vega-bundle.js` unless it already holds this bundle; return its path."""
    path, js = Path(directory) / BUNDLE_FILE, bundle_js()
    try:
        if path.stat().st_size == len(js.encode("utf-8")) and path.read_text(encoding="utf-8") == js:
            return path
    except OSError:
        pass
    return write_atomic(path, js)


STANDALONE = """<!DOCTYPE html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:1em}}#err{{color:#b00020}}</style>
<script src="{bundle}"></script></head><body><div id="vis"></div><p id="err"></p>
<script>(function(){{var spec={spec};
if(typeof vegaEmbed==="undefined"){{document.getElementById("err").textContent=
"{bundle} (the Vega bundle written next to this file) did not load: keep the two files together.";return;}}
vegaEmbed("#vis",spec,{options}).catch(function(e){{document.getElementById("err").textContent=String(e);}});
}})();</script></body></html>"""


def chart_html(spec: dict, title: str, bundle: str = BUNDLE_FILE) -> str:
    """A chart page whose spec (data included) is inline and whose Vega comes from `bundle`."""
    import html

    return STANDALONE.format(
        title=html.escape(title), bundle=html.escape(bundle), spec=script_json(spec), options=script_json(EMBED_OPTIONS)
    )


def _cut(value):
    """Floats to SIGNIFICANT digits (NaN/inf -> None); everything else unchanged."""
    if isinstance(value, float):
        return float(f"{value:.{SIGNIFICANT}g}") if math.isfinite(value) else None
    return value


def columnar(rows: list[dict]) -> dict:
    """[{a: 1.23456, b: 'x'}, ...] -> {"c": ["a", "b"], "v": [[1.235, ...], {"d": ["x"], "i": [0, ...]}]}:
    one list per column, floats cut to SIGNIFICANT digits, a column of strings as its distinct
    values plus one index per row (the loader in the page rebuilds the row objects)."""
    cols: list[str] = []
    for row in rows:
        for key in row:
            if key not in cols:
                cols.append(key)
    values = []
    for c in cols:
        col = [_cut(row.get(c)) for row in rows]
        if all(isinstance(v, str) for v in col):
            distinct = list(dict.fromkeys(col))
            index = {v: i for i, v in enumerate(distinct)}
            values.append({"d": distinct, "i": [index[v] for v in col]})
        else:
            values.append(col)
    return {"c": cols, "v": values}


LOADER = """(function(){
var store=JSON.parse(document.getElementById("ddrsa-vdata").textContent);
function col(v){return Array.isArray(v)?v:v.i.map(function(i){return v.d[i];});}
function rows(h){var d=store[h],v=d.v.map(col),n=v.length?v[0].length:0,out=new Array(n);
for(var i=0;i<n;i++){var o={};for(var j=0;j<d.c.length;j++){var x=v[j][i];if(x!==null)o[d.c[j]]=x;}out[i]=o;}
return out;}
window.ddrsaViews={};window.ddrsaChartErrors=[];window.ddrsaChartsDone=false;
var opts=OPTIONS,pending={},left=0;
function settled(){if(--left===0){window.ddrsaChartsMs=performance.now();window.ddrsaChartsDone=true;
document.dispatchEvent(new Event("ddrsa-charts-done"));}}
function draw(name){var job=pending[name];if(!job)return;delete pending[name];job();}
window.ddrsaRenderAll=function(){Object.keys(pending).forEach(draw);};
var seen=("IntersectionObserver" in window)?new IntersectionObserver(function(entries){entries.forEach(function(e){
if(e.isIntersecting){seen.unobserve(e.target);draw(e.target.getAttribute("data-name"));}});},{rootMargin:"600px"}):null;
document.querySelectorAll("script.ddrsa-spec").forEach(function(el){
var name=el.getAttribute("data-name"),target=document.getElementById("chart-"+name);left++;
target.setAttribute("data-name",name);target.textContent="drawing "+name+" ...";
pending[name]=function(){
var spec=JSON.parse(el.textContent),refs=JSON.parse(el.getAttribute("data-refs"));
spec.datasets={};refs.forEach(function(h){spec.datasets[h]=rows(h);});target.textContent="";
var fail=function(e){window.ddrsaChartErrors.push(name+": "+e);target.textContent="chart "+name+" failed: "+e;settled();};
if(typeof vegaEmbed==="undefined"){fail(new Error("Vega bundle missing"));return;}
vegaEmbed(target,spec,opts).then(function(r){window.ddrsaViews[name]=r.view;
if(window.ddrsaSelectedCfg!==undefined){try{r.view.signal("selected_cfg",window.ddrsaSelectedCfg).runAsync();}catch(e){}}
settled();},fail);};
if(seen)seen.observe(target);else draw(name);});
})();"""


class PageCharts:
    """Charts of one HTML page: `add` returns each chart's placeholder; `scripts` the bundle,
    the pooled data sets and the loader, to put once at the end of the page."""

    def __init__(self) -> None:
        self.datasets: dict[str, dict] = {}
        self.names: list[str] = []

    def add(self, name: str, spec: dict) -> str:
        """Placeholder <div> plus the spec (its data sets moved to the page pool) for chart `name`."""
        import html

        spec = dict(spec)
        refs = []
        for key, rows in (spec.pop("datasets", None) or {}).items():
            if key not in self.datasets:
                self.datasets[key] = columnar(rows)
            refs.append(key)
        self.names.append(name)
        return (
            f'<div class="vchart" id="chart-{html.escape(name)}"></div>'
            f'<script type="application/json" class="ddrsa-spec" data-name="{html.escape(name)}" '
            f"data-refs='{html.escape(json.dumps(refs))}'>{script_json(spec)}</script>"
        )

    def scripts(self) -> str:
        """'' without charts; else the Vega bundle, the data pool and the loader (in this order)."""
        if not self.names:
            return ""
        bundle = bundle_js().replace("</script", "<\\/script")  # none today; never let it end the element
        return (
            f"<script>{bundle}</script>"
            f'<script type="application/json" id="ddrsa-vdata">{script_json(self.datasets)}</script>'
            f"<script>{LOADER.replace('OPTIONS', script_json(EMBED_OPTIONS))}</script>"
        )
