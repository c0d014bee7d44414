"""The report's leaderboard: every configuration (seeds pooled) in one sortable, filterable table.

`leaderboard_frame(df)` is a pure function of `records_frame` rows; `leaderboard_html(board,
output_dir)` the HTML + inline JS (no library, opens offline). Units as in `reports.tables`:
RUL errors in steps (cycles for C-MAPSS), C-index and NASA score unitless.

Ranking: within each dataset (and C-MAPSS subset) configurations are ranked on their mean
VALIDATION RMSE across seeds (`tables.ranking_metric`: test RMSE for records without validation
metrics, and `selected_on` says so); the metric columns are TEST means with 95% t-intervals over seeds.
Baselines (models in `ddrsa.config.BASELINE_MODELS`, column `kind` "baseline") are marked rows, shown in the top view
too, and never ranked: `rank` counts DDRSA configurations only. `rul_rmse_units_low/_high` is the
test RMSE's 95% bootstrap interval over test units where the analysis computed one
(`reports.yardsticks.annotate_board`: the chosen configurations, runners-up and baselines).
Retrain commands are not stored per row: the page holds `retrain_command`'s output for
placeholder values once (`retrain_templates`) and fills in a row's values when it is opened or copied.
"""

from __future__ import annotations

import html
import math

import numpy as np
import pandas as pd

from ddrsa.config import BASELINE_MODELS
from reports.tables import (
    CONFIG_KEYS,
    HYPERPARAMETERS,
    METRICS,
    SELECTED_ON_VALIDATION,
    completed,
    config_ids,
    fmt_float,
    ranking_metric,
    retrain_command,
)
from reports.vega_page import script_json

TOP_N = 10  # rows shown before "show all"
# row fields holding exactly the text retrain_command writes for them (filled into the templates)
COMMAND_FIELDS = (
    "dataset",
    "subset",
    "model",
    "batch_size",
    "learning_rate",
    "lambda_param",
    "nasa_weight",
    "dropout",
    "num_epochs",
    "seed",
    "cfg",
)
# stand-ins for retrain_command's numeric fields (as it prints them) -> the row field filled in
_SENTINELS = {
    "batch_size": -101,
    "learning_rate": -102.0,
    "lambda_param": -103.0,
    "nasa_weight": -104.0,
    "dropout": -105.0,
    "num_epochs": -106,
    "seed": -107,
}
# (field, header, kind): kind "text", "num" (a number), "ci" (a test metric with _ci_low/_ci_high)
COLUMNS = [
    ("rank", "rank", "num"),
    ("dataset", "dataset", "text"),
    ("subset", "subset", "text"),
    ("model", "model", "text"),
    ("kind", "kind", "text"),
    ("batch_size", "batch size", "num"),
    ("learning_rate", "learning rate", "num"),
    ("lambda_param", "lambda", "num"),
    ("nasa_weight", "NASA weight", "num"),
    ("dropout", "dropout", "num"),
    ("n_seeds", "seeds", "num"),
    ("rank_value", "ranked on: validation RMSE", "num"),
    ("rul_rmse", "test RMSE [95% over seeds]", "ci"),
    ("rul_rmse_units_low", "test RMSE, 95% over test units", "units"),
    ("rul_mae", "test MAE [95% over seeds]", "ci"),
    ("concordance_index", "test C-index [95% over seeds]", "ci"),
    ("nasa_score", "test NASA score [95% over seeds]", "ci"),
    ("data_source", "data source", "text"),
]


def _half_width(sd: pd.Series, n: pd.Series, confidence: float = 0.95) -> pd.Series:
    """Half-width of the t-interval (NaN where n < 2), vectorised `tables.t_interval`."""
    from scipy import stats

    n = n.astype(float)
    t = pd.Series(stats.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1)), index=n.index)
    return (t * sd / np.sqrt(n)).where(n >= 2)


def leaderboard_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration (CONFIG_KEYS; seeds pooled) of the completed runs in `df`.

    Columns: cfg (`tables.config_ids`), rank (1 = best DDRSA configuration within dataset and
    subset; NaN ranking values last; NaN for baselines), dataset, subset, model, kind ("DDRSA" or
    "baseline"), the hyperparameters, n_seeds, rank_value (mean of the
    ranking column), selected_on, `<metric>` (test mean) with `<metric>_ci_low/_ci_high` (95%
    t-interval; NaN with one seed), data_source, seed (the repeat with the best ranking value) and
    its num_epochs, `rul_rmse_units_low/_high` (NaN here; `reports.yardsticks.annotate_board`
    fills them). Sorted by rank, then dataset and subset (baselines last).
    """
    done = completed(df).reset_index(drop=True)
    if not len(done):
        return pd.DataFrame(
            columns=[
                "cfg",
                "rank",
                *CONFIG_KEYS,
                "kind",
                "n_seeds",
                "rank_value",
                "selected_on",
                *METRICS,
                "data_source",
                "seed",
                "num_epochs",
                "rul_rmse_units_low",
                "rul_rmse_units_high",
            ]
        )
    done["cfg"] = config_ids(done)
    parts = []
    for _, runs in done.groupby(["dataset", "subset"], sort=True):
        rank_col, selected_on = ranking_metric(runs, "rul_rmse")
        g = runs.groupby("cfg")
        board = g[list(CONFIG_KEYS)].first()
        board["n_seeds"] = g.size()
        board["rank_value"] = g[rank_col].mean()
        board["selected_on"] = selected_on
        means, sds, counts = g[list(METRICS)].mean(), g[list(METRICS)].std(), g[list(METRICS)].count()
        for m in METRICS:
            half = _half_width(sds[m], counts[m])
            board[m], board[f"{m}_ci_low"], board[f"{m}_ci_high"] = means[m], means[m] - half, means[m] + half
        board["data_source"] = g["data_source"].agg(lambda s: " + ".join(sorted(set(s))))
        best_run = runs.loc[runs[rank_col].fillna(math.inf).groupby(runs["cfg"]).idxmin()].set_index("cfg")
        board["seed"], board["num_epochs"] = best_run["seed"].astype(int), best_run["num_epochs"].astype(int)
        board["kind"] = np.where(board["model"].isin(BASELINE_MODELS), "baseline", "DDRSA")
        ddrsa = board["kind"] == "DDRSA"  # baselines are yardsticks, never ranked
        # ulp-level ties tie
        board["rank"] = board["rank_value"].where(ddrsa).round(10).rank(method="min", na_option="bottom")
        board.loc[~ddrsa, "rank"] = np.nan
        parts.append(board.reset_index())
    out = pd.concat(parts, ignore_index=True)
    out["rul_rmse_units_low"] = out["rul_rmse_units_high"] = np.nan
    return out.sort_values(["rank", "dataset", "subset"], kind="stable").reset_index(drop=True)


def retrain_templates(output_dir: str) -> dict[str, str]:
    """`retrain_command` for placeholder rows: {"turbofan": ..., "other": ...} ("turbofan" for
    rows with a C-MAPSS subset); '@field@' marks where a row's COMMAND_FIELDS text goes."""
    out = {}
    for kind, dataset in (("turbofan", "turbofan"), ("other", "@dataset@")):
        row = {"dataset": dataset, "subset": "@subset@", "model": "@model@", **_SENTINELS}
        name = retrain_name({"dataset": dataset, "subset": "@subset@", "model": "@model@", "cfg": "@cfg@"})
        cmd = retrain_command(row, output_dir, name)
        for field, value in sorted(_SENTINELS.items(), key=lambda kv: -len(str(kv[1]))):
            text = fmt_float(value) if isinstance(value, float) else str(value)
            cmd = cmd.replace(text, f"@{field}@")
        out[kind] = cmd
    return out


def retrain_name(row: dict) -> str:
    """Folder name of a leaderboard row's retrain: '<dataset>[_<subset>]_<model>_cfg<cfg>'."""
    where = f"{row['dataset']}_{row['subset']}" if row["dataset"] == "turbofan" and row["subset"] else row["dataset"]
    return f"{where}_{row['model']}_cfg{row['cfg']}"


def fill_template(templates: dict[str, str], row: dict) -> str:
    """The retrain command of one decoded payload row (the Python twin of the page's JS, for tests)."""
    cmd = templates["turbofan" if row["dataset"] == "turbofan" and row["subset"] else "other"]
    for field in COMMAND_FIELDS:
        cmd = cmd.replace(f"@{field}@", str(row[field]))
    return cmd


def _shown(value):
    """Floats as the report prints them (4 significant digits, `report._e`; NaN -> None), so the page's
    own formatting shows the same digits as the tables beside it (no second rounding)."""
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return value


def payload(board: pd.DataFrame, output_dir: str) -> dict:
    """What the page's script reads: {"cols", "rows" (one array per configuration), "dicts",
    "templates", "top", "columns"}. A text column's rows hold indexes into `dicts[col]`; a column
    that is empty in every row (CIs with one seed each) is left out. The command fields hold the
    exact text `retrain_command` prints for them (hyperparameters as strings such as '0.001',
    sorted as numbers by the page)."""
    cols = ["cfg", *[c for c, _, _ in COLUMNS]]
    cols += [f"{m}_ci_{b}" for m in METRICS for b in ("low", "high")] + [
        "rul_rmse_units_high",
        "selected_on",
        "seed",
        "num_epochs",
    ]
    recs = board.to_dict(orient="records")
    for rec in recs:
        for hp in HYPERPARAMETERS:
            if pd.isna(rec[hp]):  # a baseline's record may leave it empty
                rec[hp] = None
            else:
                rec[hp] = str(int(rec[hp])) if hp == "batch_size" else fmt_float(rec[hp])
        for key in ("cfg", "rank", "n_seeds", "seed", "num_epochs"):
            rec[key] = None if pd.isna(rec[key]) else int(rec[key])  # rank: None for baselines
        for key, value in rec.items():
            rec[key] = _shown(value)
    cols = [c for c in cols if any(rec[c] is not None for rec in recs)]
    dicts = {c: list(dict.fromkeys(rec[c] for rec in recs)) for c in cols if all(isinstance(r[c], str) for r in recs)}
    index = {c: {v: i for i, v in enumerate(values)} for c, values in dicts.items()}
    rows = [[index[c][rec[c]] if c in index else rec[c] for c in cols] for rec in recs]
    return {
        "cols": cols,
        "rows": rows,
        "dicts": dicts,
        "templates": retrain_templates(output_dir),
        "top": TOP_N,
        "columns": [{"field": f, "header": h, "kind": k} for f, h, k in COLUMNS],
    }


def decoded_rows(data: dict) -> list[dict]:
    """The payload's rows as dicts, text columns looked up (what the page's script starts from)."""
    return [
        {c: (data["dicts"][c][v] if c in data["dicts"] else v) for c, v in zip(data["cols"], row)}
        for row in data["rows"]
    ]


CSS = (
    ".lb-controls{margin:0.5em 0}.lb-controls label{margin-right:1em}#leaderboard th{cursor:pointer;"
    "user-select:none;white-space:normal;max-width:9em}#leaderboard th[aria-sort=ascending]::after{content:' \\25B2'}"
    "#leaderboard th[aria-sort=descending]::after{content:' \\25BC'}#leaderboard tr.lb-filters th{cursor:auto;"
    "background:#f6f6f6}#leaderboard tr.lb-filters input{width:6em;font-size:11px}#leaderboard tbody tr.lb-row"
    "{cursor:pointer}#leaderboard tbody tr.lb-row:hover{background:#f0f6ff}#leaderboard tr.lb-selected"
    "{background:#dbeaff}#leaderboard tr.lb-baseline td{background:#f3f3f3;font-style:italic}"
    "#leaderboard tr.lb-cmd td{background:#fafafa}.lb-copy{font-size:11px;margin-left:0.5em}"
)

SCRIPT = r"""(function(){
var P=JSON.parse(document.getElementById("ddrsa-leaderboard-data").textContent);
var C={};P.cols.forEach(function(c,i){C[c]=i;});
P.rows.forEach(function(r){Object.keys(P.dicts).forEach(function(c){r[C[c]]=P.dicts[c][r[C[c]]];});});
var state={key:"rank",dir:1,all:false,selected:null,open:null,filters:{}};
var table=document.getElementById("leaderboard"),body=table.querySelector("tbody"),info=document.getElementById("lb-info");
function esc(s){return String(s).replace(/[&<>"']/g,function(c){return{"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c];});}
function fmt(x){if(x===null||x===undefined||x==="")return"";if(typeof x==="number")return String(Number(x.toPrecision(4)));return String(x);}
function num(x){return typeof x==="number"?x:(x===null||x===""?NaN:parseFloat(x));}
function ci(r,f){var m=r[C[f]],lo=r[C[f+"_ci_low"]],hi=r[C[f+"_ci_high"]];
 return lo===null||lo===undefined?fmt(m):fmt(m)+" ["+fmt(lo)+", "+fmt(hi)+"]";}
function units(r,f){var lo=r[C[f]],hi=r[C[f.replace(/_low$/,"_high")]];
 return lo===null||lo===undefined?"":"["+fmt(lo)+", "+fmt(hi)+"]";}
function cell(r,col){return col.kind==="ci"?ci(r,col.field):col.kind==="units"?units(r,col.field):fmt(r[C[col.field]]);}
function command(r){var t=P.templates[r[C.dataset]==="turbofan"&&r[C.subset]?"turbofan":"other"];
 FIELDS.forEach(function(f){t=t.split("@"+f+"@").join(String(r[C[f]]));});return t;}
window.ddrsaRetrainCommand=function(cfg){var r=P.rows.find(function(r){return r[C.cfg]===cfg;});return r?command(r):null;};
function matches(r,col,q){if(!q)return true;var v=r[C[col.field]],m=/^\s*(<=|>=|<|>|=)\s*(-?[0-9.eE+-]+)\s*$/.exec(q);
 if(m&&col.kind!=="text"){var x=num(v),y=parseFloat(m[2]);if(isNaN(x))return false;
  return m[1]==="<"?x<y:m[1]===">"?x>y:m[1]==="<="?x<=y:m[1]===">="?x>=y:x===y;}
 return cell(r,col).toLowerCase().indexOf(q.toLowerCase())>=0;}
function visible(){var any=(document.getElementById("lb-search").value||"").toLowerCase();
 var ds=document.getElementById("lb-dataset").value,mo=document.getElementById("lb-model").value;
 var rows=P.rows.filter(function(r){if(ds&&r[C.dataset]!==ds)return false;if(mo&&r[C.model]!==mo)return false;
  for(var i=0;i<P.columns.length;i++){if(!matches(r,P.columns[i],state.filters[P.columns[i].field]))return false;}
  if(any){var t=P.columns.map(function(c){return cell(r,c);}).join(" ").toLowerCase();if(t.indexOf(any)<0)return false;}
  return true;});
 var col=P.columns.find(function(c){return c.field===state.key;}),k=C[state.key];
 rows.sort(function(a,b){var x=a[k],y=b[k],d;
  if(col.kind==="text"){d=String(x).localeCompare(String(y));}
  else{x=num(x);y=num(y);if(isNaN(x)&&isNaN(y))d=0;else if(isNaN(x))return 1;else if(isNaN(y))return -1;else d=x-y;}
  return d*state.dir||a[C.rank]-b[C.rank]||a[C.cfg]-b[C.cfg];});
 return rows;}
function render(){var rows=visible(),html=[];
 var shown=state.all?rows:rows.filter(function(r,i){return i<P.top||r[C.kind]==="baseline";});
 shown.forEach(function(r){var cfg=r[C.cfg];
  html.push('<tr class="lb-row'+(state.selected===cfg?' lb-selected':'')+(r[C.kind]==="baseline"?' lb-baseline':'')+'" data-cfg="'+cfg+'">'+
   P.columns.map(function(c){return"<td>"+esc(cell(r,c))+"</td>";}).join("")+
   '<td><button class="lb-copy" data-cfg="'+cfg+'" title="copy the retrain command">copy</button></td></tr>');
  if(state.open===cfg)html.push('<tr class="lb-cmd"><td colspan="'+(P.columns.length+1)+'">selected on '+
   esc(r[C.selected_on])+'; best seed '+esc(r[C.seed])+'. Retrain: <code>'+esc(command(r))+'</code></td></tr>');});
 body.innerHTML=html.join("");
 info.textContent="showing "+shown.length+" of "+rows.length+" configurations"+(rows.length<P.rows.length?
  " (filtered from "+P.rows.length+")":"")+"; click a header to sort, a row for its retrain command"+
  " and to highlight it in the parallel coordinates";
 document.getElementById("lb-all").textContent=state.all?"show top "+P.top:"show all "+rows.length;
 table.querySelectorAll("thead th[data-field]").forEach(function(th){th.setAttribute("aria-sort",
  th.getAttribute("data-field")===state.key?(state.dir>0?"ascending":"descending"):"none");});}
function highlight(cfg){window.ddrsaSelectedCfg=cfg===null?-1:cfg;
 var v=window.ddrsaViews&&window.ddrsaViews.parallel_coordinates;
 if(v){try{v.signal("selected_cfg",cfg===null?-1:cfg).runAsync();}catch(e){}}}
function copy(text,btn){function done(){btn.textContent="copied";setTimeout(function(){btn.textContent="copy";},1500);}
 function fallback(){var ta=document.createElement("textarea");ta.value=text;document.body.appendChild(ta);ta.select();
  try{document.execCommand("copy");done();}catch(e){btn.textContent="copy failed";}document.body.removeChild(ta);}
 if(navigator.clipboard&&window.isSecureContext){navigator.clipboard.writeText(text).then(done,fallback);}else{fallback();}}
table.querySelectorAll("thead th[data-field]").forEach(function(th){th.addEventListener("click",function(){
 var f=th.getAttribute("data-field");if(state.key===f)state.dir=-state.dir;else{state.key=f;state.dir=1;}render();});});
table.querySelectorAll("tr.lb-filters input").forEach(function(inp){inp.addEventListener("input",function(){
 state.filters[inp.getAttribute("data-field")]=inp.value;render();});});
["lb-search","lb-dataset","lb-model"].forEach(function(id){document.getElementById(id).addEventListener("input",render);});
document.getElementById("lb-all").addEventListener("click",function(){state.all=!state.all;render();});
body.addEventListener("click",function(e){var btn=e.target.closest("button.lb-copy");
 if(btn){var cfg=+btn.getAttribute("data-cfg");copy(window.ddrsaRetrainCommand(cfg),btn);return;}
 var tr=e.target.closest("tr.lb-row");if(!tr)return;var cfg=+tr.getAttribute("data-cfg");
 state.open=state.open===cfg?null:cfg;state.selected=state.open;highlight(state.selected);render();});
render();})();"""


def _options(values) -> str:
    return "".join(f'<option value="{html.escape(str(v))}">{html.escape(str(v))}</option>' for v in values)


def leaderboard_html(board: pd.DataFrame, output_dir: str) -> str:
    """The leaderboard section body (controls, table, data, script); '' without configurations."""
    if not len(board):
        return ""
    if (board["selected_on"] != SELECTED_ON_VALIDATION).any():  # old records: say what ranked them
        columns = [
            (f, "ranked on: RMSE (TEST where records lack validation metrics)" if f == "rank_value" else h, k)
            for f, h, k in COLUMNS
        ]
    else:
        columns = COLUMNS
    heads = "".join(f'<th data-field="{f}" aria-sort="none">{html.escape(h)}</th>' for f, h, _ in columns)
    filters = "".join(
        f'<th><input data-field="{f}" placeholder="{"&lt;20, &gt;=0.8" if k != "text" else "contains"}"'
        f' aria-label="filter {html.escape(h)}"></th>'
        for f, h, k in COLUMNS
    )
    controls = (
        f'<div class="lb-controls"><label>dataset <select id="lb-dataset"><option value="">all</option>'
        f'{_options(sorted(board["dataset"].unique()))}</select></label><label>model <select id="lb-model">'
        f'<option value="">all</option>{_options(sorted(board["model"].unique()))}</select></label>'
        f'<label>any column <input id="lb-search" placeholder="text in any column"></label>'
        f'<button id="lb-all" type="button">show all</button> <span id="lb-info"></span></div>'
    )
    data = script_json(payload(board, output_dir))
    return (
        f"{controls}<table id='leaderboard'><thead><tr>{heads}<th>retrain</th></tr>"
        f"<tr class='lb-filters'>{filters}<th></th></tr></thead><tbody></tbody></table>"
        f'<script type="application/json" id="ddrsa-leaderboard-data">{data}</script>'
        f"<script>{SCRIPT.replace('FIELDS', script_json(list(COMMAND_FIELDS)))}</script>"
    )
