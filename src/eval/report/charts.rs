//! The run's SVG charts, drawn with plotters' SVG backend: effect per trial (forest plot),
//! accuracy per condition, cost against accuracy. Each is a standalone SVG string: written to
//! `charts/` for the Markdown report and inlined into the HTML report.
use std::path::Path;

use plotters::chart::{MeshStyle, SeriesLabelStyle};
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::types::RangedCoordi32;
use plotters::prelude::*;

use super::format::Num;
use super::{AggTrial, Aggregate, ReportError};
use crate::display;
use crate::stats::significance::{CONTROL, TREATMENT};

/// One drawn chart.
pub(crate) struct Chart {
    pub file: &'static str,
    pub title: String,
    pub caption: String,
    pub svg: String,
}

const WIDTH: u32 = 960;
const ROW: u32 = 42;
const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(31, 41, 55);
const GRID: RGBColor = RGBColor(229, 231, 235);
const CONTROL_COLOR: RGBColor = RGBColor(107, 114, 128);
const TREATMENT_COLOR: RGBColor = RGBColor(37, 99, 235);
const SIGNIFICANT: RGBColor = RGBColor(13, 148, 136);
const NOT_SIGNIFICANT: RGBColor = RGBColor(100, 116, 139);

pub(crate) fn draw_all(agg: &Aggregate, dir: &Path) -> Result<Vec<Chart>, ReportError> {
    let err = |file: &str| {
        let path = dir.join(file);
        move |e: String| ReportError::Chart { path: path.clone(), message: e }
    };
    Ok(vec![
        forest(agg).map_err(err("effects.svg"))?,
        accuracy(agg).map_err(err("accuracy.svg"))?,
        cost(agg).map_err(err("cost_accuracy.svg"))?,
    ])
}

fn pct_trials(agg: &Aggregate) -> Num {
    let kind = agg.trials.iter().filter_map(|t| t.sig.as_ref()?.score_kind).next();
    Num::for_kind(kind)
}

/// "T3 gpt-oss-120b-operational_only-t0-…", short enough for the axis.
fn label(i: usize, t: &AggTrial) -> String {
    let mut s: String = t.slug.chars().take(44).collect();
    if t.slug.chars().count() > 44 {
        s.push('…');
    }
    format!("T{} {s}", i + 1)
}

fn y_label_width(agg: &Aggregate) -> u32 {
    let longest =
        agg.trials.iter().enumerate().map(|(i, t)| label(i, t).chars().count()).max().unwrap_or(4);
    (longest as u32 * 7 + 16).clamp(60, 360)
}

/// Padded range around the values (and around 0 when asked), never empty.
fn span(
    values: impl Iterator<Item = f64>,
    include_zero: bool,
    pad: f64,
    min_width: f64,
) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if include_zero || !lo.is_finite() {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    let width = (hi - lo).max(min_width);
    let mid = (hi + lo) / 2.0;
    (mid - width / 2.0 * (1.0 + pad), mid + width / 2.0 * (1.0 + pad))
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Effect with its CI per trial; teal when significant after Holm.
fn forest(agg: &Aggregate) -> Result<Chart, String> {
    let num = pct_trials(agg);
    let n = agg.trials.len().max(1);
    let effects: Vec<Option<(f64, Option<[f64; 2]>)>> = agg
        .trials
        .iter()
        .map(|t| t.sig.as_ref()?.difference.as_ref().map(|d| (d.mean, d.ci)))
        .collect();
    let (x0, x1) = span(
        effects
            .iter()
            .flatten()
            .flat_map(|(m, ci)| [Some(*m), ci.map(|c| c[0]), ci.map(|c| c[1])])
            .flatten(),
        true,
        0.12,
        0.02,
    );
    let height = 110 + ROW * n as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(s)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Effect of the treatment prompt per trial", (FONT, 22).into_font().color(&INK))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(y_label_width(agg))
            .build_cartesian_2d(x0..x1, rows(n))
            .map_err(s)?;
        let labels: Vec<String> = agg.trials.iter().enumerate().map(|(i, t)| label(i, t)).collect();
        let y_fmt = |y: &i32| row_label(&labels, *y);
        let x_fmt = |x: &f64| diff_tick(num, *x, x1 - x0);
        house_mesh(&mut chart.configure_mesh())
            .disable_y_mesh()
            .x_desc(format!("treatment − control ({})", num.diff_unit()))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(s)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, -60), (0.0, n as i32 * 100 - 40)],
                INK.stroke_width(1),
            )))
            .map_err(s)?;
        for (i, (e, t)) in effects.iter().zip(&agg.trials).enumerate() {
            let Some((m, ci)) = e else { continue };
            let color =
                if t.holm_p.is_some_and(|h| h < agg.alpha) { SIGNIFICANT } else { NOT_SIGNIFICANT };
            let y = row_y(n, i);
            if let Some([lo, hi]) = ci {
                let style = color.stroke_width(3);
                chart
                    .draw_series([
                        PathElement::new(vec![(*lo, y), (*hi, y)], style),
                        PathElement::new(vec![(*lo, y - 15), (*lo, y + 15)], style),
                        PathElement::new(vec![(*hi, y - 15), (*hi, y + 15)], style),
                    ])
                    .map_err(s)?;
            }
            chart
                .draw_series(std::iter::once(Circle::new((*m, y), 7, color.filled())))
                .map_err(s)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    num.diff(*m),
                    (*m, y + 42),
                    (FONT, 14).into_font().color(&INK),
                )))
                .map_err(s)?;
        }
        root.present().map_err(s)?;
    }
    let level = super::markdown::ci_level(agg.alpha);
    Ok(Chart {
        file: "effects.svg",
        title: "Effect per trial".into(),
        caption: format!(
            "Each dot is a trial's paired effect (treatment − control) with its {level} confidence \
             interval; teal marks trials significant after Holm's correction. An interval that \
             crosses the vertical line at 0 is consistent with no effect."
        ),
        svg,
    })
}

/// The house style of every chart's grid and axes: light grid, grey axes, dark labels.
fn house_mesh<'a, 'b, 'm, X: Ranged, Y: Ranged>(
    m: &'m mut MeshStyle<'a, 'b, X, Y, SVGBackend<'a>>,
) -> &'m mut MeshStyle<'a, 'b, X, Y, SVGBackend<'a>> {
    m.bold_line_style(GRID)
        .light_line_style(WHITE)
        .axis_style(CONTROL_COLOR)
        .label_style((FONT, 14).into_font().color(&INK))
        .axis_desc_style((FONT, 14).into_font().color(&INK))
}

/// The house style of a legend, at `position`.
fn house_legend<'a, 'b, 'm, CT: CoordTranslate>(
    l: &'m mut SeriesLabelStyle<'a, 'b, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> &'m mut SeriesLabelStyle<'a, 'b, SVGBackend<'a>, CT> {
    l.position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(GRID)
        .label_font((FONT, 13).into_font().color(&INK))
}

/// Trials are rows: row i sits at y = 100·(n − 1 − i) (first trial on top), in hundredths of
/// a row so markers can sit just above or below it; a tick (and its label) on every row.
fn rows(n: usize) -> WithKeyPoints<RangedCoordi32> {
    let keys: Vec<i32> = (0..n as i32).map(|i| i * 100).collect();
    let range: RangedCoordi32 = (-60..n as i32 * 100 - 40).into();
    range.with_key_points(keys)
}

/// [`rows`] with a blank row above the first, where the legend sits without hiding data.
fn rows_with_legend(n: usize) -> WithKeyPoints<RangedCoordi32> {
    let keys: Vec<i32> = (0..n as i32).map(|i| i * 100).collect();
    let range: RangedCoordi32 = (-60..n as i32 * 100 + 60).into();
    range.with_key_points(keys)
}

fn row_y(n: usize, i: usize) -> i32 {
    (n - 1 - i) as i32 * 100
}

fn row_label(labels: &[String], y: i32) -> String {
    if y % 100 != 0 {
        return String::new();
    }
    let i = labels.len() as i32 - 1 - y / 100;
    usize::try_from(i).ok().and_then(|i| labels.get(i).cloned()).unwrap_or_default()
}

fn diff_tick(num: Num, x: f64, width: f64) -> String {
    let x = if x.abs() < width * 1e-9 { 0.0 } else { x };
    if num.pct {
        if width * 100.0 < 8.0 {
            format!("{:+.1}", x * 100.0)
        } else {
            format!("{:+.0}", x * 100.0)
        }
    } else {
        format!("{x:+.3}")
    }
}

/// Per trial: control and treatment level with their CIs.
fn accuracy(agg: &Aggregate) -> Result<Chart, String> {
    let num = pct_trials(agg);
    let n = agg.trials.len().max(1);
    let cond = |t: &AggTrial, c: &str| {
        let s = t.sig.as_ref()?.conditions.get(c)?;
        s.mean.map(|m| (m, s.ci))
    };
    let values = agg.trials.iter().flat_map(|t| {
        [CONTROL, TREATMENT]
            .into_iter()
            .filter_map(|c| cond(t, c))
            .flat_map(|(m, ci)| [Some(m), ci.map(|c| c[0]), ci.map(|c| c[1])].into_iter().flatten())
    });
    let (mut x0, mut x1) = span(values, false, 0.1, 0.05);
    x0 = x0.max(0.0);
    x1 = x1.min(1.0).max(x0 + 0.01);
    let height = 150 + (ROW + 14) * (n as u32 + 1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(s)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{} per condition", cap(num.level_name())),
                (FONT, 22).into_font().color(&INK),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(y_label_width(agg))
            .build_cartesian_2d(x0..x1, rows_with_legend(n))
            .map_err(s)?;
        let labels: Vec<String> = agg.trials.iter().enumerate().map(|(i, t)| label(i, t)).collect();
        let y_fmt = |y: &i32| row_label(&labels, *y);
        let x_fmt =
            |x: &f64| if num.pct { format!("{:.0}%", x * 100.0) } else { format!("{x:.2}") };
        house_mesh(&mut chart.configure_mesh())
            .disable_y_mesh()
            .x_desc(num.level_name())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(s)?;
        for (c, color, offset) in [(CONTROL, CONTROL_COLOR, 17), (TREATMENT, TREATMENT_COLOR, -17)]
        {
            let mut points = Vec::new();
            for (i, t) in agg.trials.iter().enumerate() {
                let Some((m, ci)) = cond(t, c) else { continue };
                let y = row_y(n, i) + offset;
                if let Some([lo, hi]) = ci {
                    chart
                        .draw_series(std::iter::once(PathElement::new(
                            vec![(lo, y), (hi, y)],
                            color.stroke_width(3),
                        )))
                        .map_err(s)?;
                }
                points.push((m, y));
            }
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 6, color.filled())))
                .map_err(s)?
                .label(c)
                .legend(move |(x, y)| Circle::new((x + 8, y), 6, color.filled()));
        }
        house_legend(&mut chart.configure_series_labels(), SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(s)?;
        root.present().map_err(s)?;
    }
    let level = super::markdown::ci_level(agg.alpha);
    Ok(Chart {
        file: "accuracy.svg",
        title: format!("{} per condition", cap(num.level_name())),
        caption: format!(
            "Control (grey) and treatment (blue) {} per trial with {level} intervals (Wilson for \
             0/1 scores, normal otherwise). Overlapping intervals do not mean \"no difference\": \
             the paired test above is the one to read.",
            num.level_name()
        ),
        svg,
    })
}

/// Cost of each condition against its level, one line per trial from control to treatment.
fn cost(agg: &Aggregate) -> Result<Chart, String> {
    let num = pct_trials(agg);
    let point = |t: &AggTrial, c: &str| {
        let m = t.sig.as_ref()?.conditions.get(c)?.mean?;
        let usd = t.costs.as_ref()?.conditions.get(c)?.usd?;
        Some((usd, m))
    };
    let pts: Vec<[Option<(f64, f64)>; 2]> =
        agg.trials.iter().map(|t| [point(t, CONTROL), point(t, TREATMENT)]).collect();
    let all: Vec<(f64, f64)> = pts.iter().flatten().flatten().copied().collect();
    let any_cost = all.iter().any(|p| p.0 > 0.0);
    let (_, xmax) = span(all.iter().map(|p| p.0), true, 0.15, 1e-6);
    let (x0, x1) = if any_cost { (0.0, xmax) } else { (0.0, 1.0) };
    let (mut y0, mut y1) = span(all.iter().map(|p| p.1), false, 0.2, 0.05);
    y0 = y0.max(0.0);
    y1 = y1.min(1.0).max(y0 + 0.01);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(s)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("Cost against {}", num.level_name()),
                (FONT, 22).into_font().color(&INK),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(s)?;
        let x_fmt = |x: &f64| display::usd(*x);
        let y_fmt =
            |y: &f64| if num.pct { format!("{:.0}%", y * 100.0) } else { format!("{y:.2}") };
        house_mesh(&mut chart.configure_mesh())
            .x_desc(if any_cost {
                "cost of the condition (USD)"
            } else {
                "cost (no pricing configured: all $0)"
            })
            .y_desc(num.level_name())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(s)?;
        for [c, t] in &pts {
            if let (Some(a), Some(b)) = (c, t) {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![*a, *b],
                        GRID.stroke_width(2),
                    )))
                    .map_err(s)?;
            }
        }
        for (k, (c, color)) in
            [(CONTROL, CONTROL_COLOR), (TREATMENT, TREATMENT_COLOR)].into_iter().enumerate()
        {
            let series: Vec<(usize, (f64, f64))> =
                pts.iter().enumerate().filter_map(|(i, p)| p[k].map(|v| (i, v))).collect();
            chart
                .draw_series(series.iter().map(|(_, p)| Circle::new(*p, 6, color.filled())))
                .map_err(s)?
                .label(c)
                .legend(move |(x, y)| Circle::new((x + 8, y), 6, color.filled()));
            if k == 1 {
                chart
                    .draw_series(series.iter().map(|(i, p)| {
                        EmptyElement::at(*p)
                            + Text::new(
                                format!("T{}", i + 1),
                                (9, -18),
                                (FONT, 14).into_font().color(&INK),
                            )
                    }))
                    .map_err(s)?;
            }
        }
        house_legend(&mut chart.configure_series_labels(), SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(s)?;
        root.present().map_err(s)?;
    }
    Ok(Chart {
        file: "cost_accuracy.svg",
        title: format!("Cost against {}", num.level_name()),
        caption: format!(
            "Each trial's control (grey) and treatment (blue) condition: what it cost and the {} it \
             reached; a line joins the two conditions of a trial (labelled T1, T2, … as in the table).",
            num.level_name()
        ),
        svg,
    })
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}
