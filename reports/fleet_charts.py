"""Chart of a scored fleet: the predicted survival curves of the units most at risk.

`survival_curves(scores, top_n)`: one line per unit, S(k) = P(no failure within the next k+1 steps)
over k = 0..L-1, for the `top_n` first rows of `ddrsa.score.score`'s table (riskiest first; the
curves are in `scores.attrs["survival"]`, same row order).
"""

from __future__ import annotations

import altair as alt
import pandas as pd


def survival_frame(scores: pd.DataFrame, top_n: int = 10) -> pd.DataFrame:
    """Long table (unit, rank, step, survival) of the `top_n` riskiest units."""
    surv = scores.attrs["survival"]
    rows = []
    for rank in range(min(top_n, len(scores))):
        unit = str(scores["unit"].iloc[rank])
        rows += [
            {"unit": unit, "rank": rank + 1, "step": k + 1, "survival": float(s)} for k, s in enumerate(surv[rank])
        ]
    return pd.DataFrame(rows)


def survival_curves(scores: pd.DataFrame, top_n: int = 10, title: str = "Units most at risk") -> alt.Chart:
    data = survival_frame(scores, top_n)
    order = list(dict.fromkeys(data["unit"]))
    return (
        alt.Chart(data)
        .mark_line(point=False)
        .encode(
            x=alt.X("step:Q", title="steps ahead"),
            y=alt.Y("survival:Q", title="P(no failure yet)", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("unit:N", sort=order, title="unit (riskiest first)"),
            tooltip=["unit:N", "rank:Q", "step:Q", alt.Tooltip("survival:Q", format=".3f")],
        )
        .properties(
            title=alt.Title(title, subtitle="predicted survival curve from each unit's last step"),
            width=480,
            height=260,
        )
    )
