"""What every kipu dashboard shares: the datasource and the chained variables, filters,
queries and the few panel shapes the dashboards are made of (grafana-foundation-sdk)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

#: Every panel reads the datasource the `datasource` variable selects.
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")

#: Series filters for the variables. `site_id`, `project` and `region` are on every
#: stored series (the collector binds them to the site's token), so these apply to agent
#: series, the collector's per-site series and the recording rules alike.
PROJECT = 'project=~"$project"'
REGION = f'{PROJECT}, region=~"$region"'
SITE = f'{REGION}, site_id=~"$site"'

#: The NOC's default view: what happened today, refreshed every minute.
DEFAULT_RANGE = ("now-24h", "now")
REFRESH = "1m"

#: Where the site dashboard lives, for links from tables (`site_id` column).
SITE_LINK = "/d/kipu-site/kipu-site?var-site=${__data.fields.site_id}&${__url_time_range}"


def datasource_variable() -> db.DatasourceVariable:
    """`$datasource`: any Prometheus-compatible store holding kipu's series."""
    return (
        db.DatasourceVariable("datasource")
        .id("datasource")
        .label("Data source")
        .type("prometheus")
        .description("The Prometheus (or compatible store) the collector forwards into.")
    )


def _label_variable(name: str, label: str, query: str, description: str) -> db.QueryVariable:
    return (
        db.QueryVariable(name)
        # The SDK's default id is the same for every variable; Grafana's variable store
        # is keyed by id (falling back to the name), so each gets its name.
        .id(name)
        .label(label)
        .description(description)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dm.VariableOption(selected=True, text="All", value="$__all"))
    )


def project_variable() -> db.QueryVariable:
    """`$project`: projects of the collector's inventory."""
    return _label_variable(
        "project",
        "Project",
        "label_values(kipu_site_info, project)",
        "Projects of the collector's inventory (kipu_site_info).",
    )


def region_variable() -> db.QueryVariable:
    """`$region`: regions of the selected projects."""
    return _label_variable(
        "region",
        "Region",
        f"label_values(kipu_site_info{{{PROJECT}}}, region)",
        "Regions (departments) of the selected projects.",
    )


def site_variable() -> db.QueryVariable:
    """`$site`: sites of the selected projects and regions."""
    return _label_variable(
        "site",
        "Site",
        f"label_values(kipu_site_info{{{REGION}}}, site_id)",
        "Sites (site_id) of the selected projects and regions.",
    )


def new_dashboard(
    uid: str, title: str, description: str, *, sites: bool, tags: Sequence[str] = ()
) -> db.Dashboard:
    """A dashboard with kipu's defaults, the datasource variable and the chained filters
    (project, region and, with `sites`, site)."""
    variables = [datasource_variable(), project_variable(), region_variable()]
    if sites:
        variables.append(site_variable())
    links: list[cogbuilder.Builder[dm.DashboardLink]] = [
        db.DashboardLink("kipu")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(["kipu"])
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True)
    ]
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["kipu", *tags])
        .editable()
        .timezone("browser")
        .time(*DEFAULT_RANGE)
        .refresh(REFRESH)
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .variables(variables)
        .links(links)
    )


def query(
    expr: str,
    legend: str = "",
    *,
    ref: str = "A",
    instant: bool = False,
    table_format: bool = False,
    heatmap_format: bool = False,
) -> prometheus.Dataquery:
    """One Prometheus target: a range query unless `instant`."""
    target = prometheus.Dataquery().expr(expr).ref_id(ref).editor_mode(pm.QueryEditorMode.CODE)
    target = target.instant() if instant else target.range()
    if legend:
        target = target.legend_format(legend)
    if table_format:
        target = target.format(pm.PromQueryFormat.TABLE)
    elif heatmap_format:
        target = target.format(pm.PromQueryFormat.HEATMAP)
    return target


def thresholds(*steps: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (from minus infinity)."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for value, color in steps])
    )


#: Availability: red under 95 %, orange under 99 %, green above.
AVAILABILITY_COLOURS = thresholds((None, "red"), (0.95, "orange"), (0.99, "green"))


def value_mapping(texts: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    """A value -> (text, colour) mapping."""
    return [
        dm.ValueMap(
            options={
                value: dm.ValueMappingResult(text=text, color=colour, index=index)
                for index, (value, (text, colour)) in enumerate(texts.items())
            }
        )
    ]


def unit_override(unit: str) -> list[dm.DynamicConfigValue]:
    """Field override properties setting the unit (for tables mixing units)."""
    return [dm.DynamicConfigValue(id_val="unit", value=unit)]


def legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def tooltip() -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)


def timeseries_panel(
    title: str,
    description: str,
    targets: Iterable[prometheus.Dataquery],
    *,
    unit: str,
    width: int = 12,
    height: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series of range queries."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(width)
        .height(height)
        .legend(legend())
        .tooltip(tooltip())
        .line_width(1)
        .fill_opacity(10)
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    return panel


def stat_panel(
    title: str,
    description: str,
    targets: Iterable[prometheus.Dataquery],
    *,
    unit: str,
    width: int = 6,
    height: int = 4,
    colours: db.ThresholdsConfig | None = None,
    mappings: list[dm.ValueMapping] | None = None,
    decimals: int | None = None,
) -> stat.Panel:
    """Big numbers, the last value of instant queries."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .span(width)
        .height(height)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(colours or thresholds((None, "blue")))
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def table_panel(
    title: str,
    description: str,
    targets: Iterable[prometheus.Dataquery],
    *,
    hidden: Sequence[str] = ("Time",),
    renames: dict[str, str] | None = None,
    order: Sequence[str] = (),
    sort_by: str | None = None,
    descending: bool = True,
    unit: str | None = None,
    width: int = 12,
    height: int = 8,
    site_links: bool = False,
) -> table.Panel:
    """A table of instant queries in table format, merged on their common labels."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .span(width)
        .height(height)
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": dict.fromkeys(hidden, True),
                    "indexByName": {name: index for index, name in enumerate(order)},
                    "renameByName": renames or {},
                },
            )
        )
    )
    if unit is not None:
        panel = panel.unit(unit)
    if sort_by is not None:
        panel = panel.sort_by([cb.TableSortByFieldState().display_name(sort_by).desc(descending)])
    if site_links:
        panel = panel.override_by_name(
            "site_id",
            [
                dm.DynamicConfigValue(
                    id_val="links",
                    value=[{"title": "Site detail", "url": SITE_LINK}],
                )
            ],
        )
    return panel


def row(title: str) -> db.Row:
    return db.Row(title)
