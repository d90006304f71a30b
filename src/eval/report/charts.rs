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
fn label(i: usize, slug: &str) -> String {
    let mut s: String = slug.chars().take(44).collect();
    if slug.chars().count() > 44 {
        s.push('…');
    }
    format!("T{} {s}", i + 1)
}

fn trial_labels(agg: &Aggregate) -> Vec<String> {
    agg.trials.iter().enumerate().map(|(i, t)| label(i, &t.slug)).collect()
}

fn y_label_width(labels: &[String]) -> u32 {
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4);
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
pub(crate) fn forest(agg: &Aggregate) -> Result<Chart, String> {
    forest_runs(&[(String::new(), agg)])
}

/// Colors of the runs a forest plot overlays, in order.
const RUN_COLORS: [RGBColor; 4] =
    [RGBColor(107, 114, 128), RGBColor(37, 99, 235), RGBColor(217, 119, 6), RGBColor(147, 51, 234)];

/// The forest plot of one run, or of several overlaid (one color per run, a trial per row,
/// matched by slug): each effect with its CI. One run: teal marks significance after Holm and
/// each effect is written under its dot. Several: a filled dot is significant after Holm, a
/// ring is not, and the runs sit side by side within a row so their intervals never overlap.
pub(crate) fn forest_runs(runs: &[(String, &Aggregate)]) -> Result<Chart, String> {
    let several = runs.len() > 1;
    let first = runs.first().map(|r| r.1).ok_or("no run to draw")?;
    let num = pct_trials(first);
    let alpha = first.alpha;
    let slugs = union_slugs(runs);
    let n = slugs.len().max(1);
    // The headline: the paired effect and the interval that inverts the trial's test.
    let effect = |t: &AggTrial| t.sig.as_ref()?.headline.as_ref().map(|h| (h.effect, h.ci));
    let all = runs.iter().flat_map(|(_, a)| a.trials.iter().filter_map(effect));
    let (x0, x1) = span(
        all.flat_map(|(m, ci)| [Some(m), ci.map(|c| c[0]), ci.map(|c| c[1])]).flatten(),
        true,
        0.12,
        0.02,
    );
    let row = if several { ROW.max(18 * runs.len() as u32 + 12) } else { ROW };
    let height = 110 + row * n as u32 + if several { 40 } else { 0 };
    let labels: Vec<String> = slugs.iter().enumerate().map(|(i, s)| label(i, s)).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(s)?;
        let caption = if several {
            "Effect of the treatment prompt per trial, runs overlaid"
        } else {
            "Effect of the treatment prompt per trial"
        };
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, (FONT, 22).into_font().color(&INK))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(y_label_width(&labels))
            .build_cartesian_2d(x0..x1, if several { rows_with_legend(n) } else { rows(n) })
            .map_err(s)?;
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
        let k = runs.len() as i32;
        for (r, (run_label, agg)) in runs.iter().enumerate() {
            // Runs spread over ±30 hundredths of a row around the row's line.
            let offset = if several { 30 - 60 * r as i32 / (k - 1).max(1) } else { 0 };
            let run_color = RUN_COLORS[r % RUN_COLORS.len()];
            for t in &agg.trials {
                let Some((m, ci)) = effect(t) else { continue };
                let Some(i) = slugs.iter().position(|s| *s == t.slug) else { continue };
                let significant = t.holm_p.is_some_and(|h| h < agg.alpha);
                let color = match (several, significant) {
                    (true, _) => run_color,
                    (false, true) => SIGNIFICANT,
                    (false, false) => NOT_SIGNIFICANT,
                };
                let y = row_y(n, i) + offset;
                let cap = if several { 8 } else { 15 };
                if let Some([lo, hi]) = ci {
                    let style = color.stroke_width(if several { 2 } else { 3 });
                    chart
                        .draw_series([
                            PathElement::new(vec![(lo, y), (hi, y)], style),
                            PathElement::new(vec![(lo, y - cap), (lo, y + cap)], style),
                            PathElement::new(vec![(hi, y - cap), (hi, y + cap)], style),
                        ])
                        .map_err(s)?;
                }
                let dot = if several && !significant {
                    Circle::new((m, y), 6, color.stroke_width(2))
                } else {
                    Circle::new((m, y), if several { 6 } else { 7 }, color.filled())
                };
                chart.draw_series(std::iter::once(dot)).map_err(s)?;
                if !several {
                    chart
                        .draw_series(std::iter::once(Text::new(
                            num.diff(m),
                            (m, y + 42),
                            (FONT, 14).into_font().color(&INK),
                        )))
                        .map_err(s)?;
                }
            }
            if several {
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, i32), i32>>())
                    .map_err(s)?
                    .label(run_label.as_str())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 6, run_color.filled()));
            }
        }
        if several {
            house_legend(&mut chart.configure_series_labels(), SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(s)?;
        }
        root.present().map_err(s)?;
    }
    let caption = forest_caption(several, alpha);
    Ok(Chart { file: "effects.svg", title: "Effect per trial".into(), caption, svg })
}

/// Every trial slug of `runs`, in first-seen order: the forest plot's rows.
fn union_slugs<'a>(runs: &'a [(String, &Aggregate)]) -> Vec<&'a str> {
    let mut slugs: Vec<&str> = Vec::new();
    for (_, agg) in runs {
        for t in &agg.trials {
            if !slugs.contains(&t.slug.as_str()) {
                slugs.push(&t.slug);
            }
        }
    }
    slugs
}

fn forest_caption(several: bool, alpha: f64) -> String {
    let level = super::markdown::ci_level(alpha);
    if several {
        format!(
            "Each dot is a trial's paired effect (treatment − control) in one run, with the {level} \
             interval that inverts its headline test; filled dots are significant after Holm's correction, rings are \
             not. An interval that crosses the vertical line at 0 is consistent with no effect."
        )
    } else {
        format!(
            "Each dot is a trial's paired effect (treatment − control) with the {level} interval \
             that inverts its headline test; teal marks trials significant after Holm's correction. An interval that \
             crosses the vertical line at 0 is consistent with no effect."
        )
    }
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
pub(crate) fn accuracy(agg: &Aggregate) -> Result<Chart, String> {
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
    let labels = trial_labels(agg);
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
            .y_label_area_size(y_label_width(&labels))
            .build_cartesian_2d(x0..x1, rows_with_legend(n))
            .map_err(s)?;
        let y_fmt = |y: &i32| row_label(&labels, *y);
        let x_fmt = |x: &f64| if num.pct { display::share(*x) } else { format!("{x:.2}") };
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

/// One condition of one trial on the cost chart.
#[derive(Clone, Copy)]
struct CostPoint {
    usd: f64,
    level: f64,
    ci: Option<[f64; 2]>,
}

/// Whether costs spread over more than 10x, all above zero: then the cost axis is logarithmic,
/// so a cheap trial is not squeezed against the axis by an expensive one.
fn log_costs(costs: &[f64]) -> bool {
    let lo = costs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = costs.iter().copied().fold(0.0, f64::max);
    !costs.is_empty() && lo > 0.0 && hi / lo > 10.0
}

/// Ticks of the cost axis, in axis units: powers of ten (with 2 and 5 between when the axis
/// spans few decades) on a log axis, round steps on a linear one.
fn cost_ticks(x0: f64, x1: f64, log: bool) -> Vec<f64> {
    let mut ticks = Vec::new();
    if log {
        let few = x1 - x0 < 2.5;
        for decade in (x0.floor() as i32)..=(x1.ceil() as i32) {
            for m in if few { &[1.0, 2.0, 5.0][..] } else { &[1.0][..] } {
                let t = f64::from(decade) + f64::log10(*m);
                if t >= x0 && t <= x1 {
                    ticks.push(t);
                }
            }
        }
    } else {
        let raw = (x1 - x0) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
        let mut t = (x0 / step).ceil() * step;
        while t <= x1 + step * 1e-9 {
            ticks.push(t);
            t += step;
        }
    }
    ticks
}

/// Places labels near their points without overlapping one another: each label (width from
/// its length, in pixels) goes to the first of a few offsets around its point that collides
/// with no label placed before it. Returns the pixel offset of each label.
fn place_labels(points: &[(i32, i32)], labels: &[String]) -> Vec<(i32, i32)> {
    const H: i32 = 16;
    let candidates: Vec<(i32, i32)> = [(9, -18), (9, 4), (-9, -18), (-9, 4)]
        .into_iter()
        .chain((1..8).flat_map(|k| [(9, -18 - H * k), (9, 4 + H * k)]))
        .collect();
    let mut placed: Vec<(i32, i32, i32, i32)> = Vec::new();
    let mut out = Vec::with_capacity(points.len());
    for ((px, py), text) in points.iter().zip(labels) {
        let w = 8 * text.chars().count() as i32 + 4;
        let rect = |(dx, dy): (i32, i32)| {
            let x = if dx < 0 { px + dx - w } else { px + dx };
            (x, py + dy, x + w, py + dy + H)
        };
        let free = |r: (i32, i32, i32, i32)| {
            placed.iter().all(|p| r.2 <= p.0 || p.2 <= r.0 || r.3 <= p.1 || p.3 <= r.1)
        };
        let choice = candidates.iter().copied().find(|c| free(rect(*c))).unwrap_or(candidates[0]);
        placed.push(rect(choice));
        let (dx, dy) = choice;
        out.push(if dx < 0 { (dx - w, dy) } else { (dx, dy) });
    }
    out
}

/// Cost of each condition against its level with its CI as an error bar, one line per trial
/// from control to treatment; a log cost axis when costs spread over 10x.
pub(crate) fn cost(agg: &Aggregate) -> Result<Chart, String> {
    let num = pct_trials(agg);
    let pts = cost_points(agg);
    let CostAxes { any_cost, log, x: (x0, x1), y: (y0, y1) } = cost_axes(&pts);
    let to_x = |usd: f64| if log { usd.log10() } else { usd };
    // The cost axis runs in integer steps over [x0, x1] (plotters labels only integer axes
    // with chosen ticks); each tick keeps its exact value for its label.
    const STEPS: f64 = 100_000.0;
    let norm = |x: f64| ((x - x0) / (x1 - x0) * STEPS).round() as i32;
    let ticks: Vec<(i32, f64)> =
        cost_ticks(x0, x1, log).into_iter().map(|t| (norm(t), t)).collect();
    let x_axis: RangedCoordi32 = (0..STEPS as i32).into();
    let x_axis = x_axis.with_key_points(ticks.iter().map(|t| t.0).collect());
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
            .build_cartesian_2d(x_axis, y0..y1)
            .map_err(s)?;
        let x_fmt = |xi: &i32| {
            let x = ticks
                .iter()
                .find(|t| t.0 == *xi)
                .map(|t| t.1)
                .unwrap_or(x0 + f64::from(*xi) / STEPS * (x1 - x0));
            display::usd(if log { 10f64.powf(x) } else { x })
        };
        let y_fmt = |y: &f64| if num.pct { display::share(*y) } else { format!("{y:.2}") };
        house_mesh(&mut chart.configure_mesh())
            .x_desc(match (any_cost, log) {
                (false, _) => "cost (no pricing configured: all $0)",
                (true, true) => "cost of the condition (USD, log scale)",
                (true, false) => "cost of the condition (USD)",
            })
            .y_desc(num.level_name())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .draw()
            .map_err(s)?;
        // Control sits a little left of its cost and treatment a little right, so two
        // conditions of the same cost keep their error bars apart.
        const DODGE: i32 = (STEPS / 120.0) as i32;
        let at = |p: &CostPoint, k: usize| {
            (norm(to_x(p.usd)) + if k == 0 { -DODGE } else { DODGE }, p.level)
        };
        for [c, t] in &pts {
            if let (Some(a), Some(b)) = (c, t) {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![at(a, 0), at(b, 1)],
                        GRID.stroke_width(2),
                    )))
                    .map_err(s)?;
            }
        }
        for (k, (c, color)) in
            [(CONTROL, CONTROL_COLOR), (TREATMENT, TREATMENT_COLOR)].into_iter().enumerate()
        {
            let series: Vec<CostPoint> = pts.iter().filter_map(|p| p[k]).collect();
            let bar = color.mix(0.7).stroke_width(2);
            for p in series.iter().filter(|p| p.ci.is_some()) {
                let [lo, hi] = p.ci.unwrap_or([p.level, p.level]);
                let x = at(p, k).0;
                chart.draw_series([PathElement::new(vec![(x, lo), (x, hi)], bar)]).map_err(s)?;
                for end in [lo, hi] {
                    chart
                        .draw_series([EmptyElement::at((x, end))
                            + PathElement::new(vec![(-5, 0), (5, 0)], bar)])
                        .map_err(s)?;
                }
            }
            chart
                .draw_series(series.iter().map(|p| Circle::new(at(p, k), 6, color.filled())))
                .map_err(s)?
                .label(c)
                .legend(move |(x, y)| Circle::new((x + 8, y), 6, color.filled()));
        }
        // T1, T2, … beside each trial's treatment point, moved apart where they would overlap.
        let labelled: Vec<(usize, CostPoint)> =
            pts.iter().enumerate().filter_map(|(i, p)| p[1].map(|v| (i, v))).collect();
        let texts: Vec<String> = labelled.iter().map(|(i, _)| format!("T{}", i + 1)).collect();
        let pixels: Vec<(i32, i32)> =
            labelled.iter().map(|(_, p)| chart.backend_coord(&at(p, 1))).collect();
        let offsets = place_labels(&pixels, &texts);
        chart
            .draw_series(labelled.iter().zip(texts).zip(offsets).map(|(((_, p), text), off)| {
                EmptyElement::at(at(p, 1))
                    + Text::new(text, off, (FONT, 14).into_font().color(&INK))
            }))
            .map_err(s)?;
        house_legend(&mut chart.configure_series_labels(), SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(s)?;
        root.present().map_err(s)?;
    }
    Ok(Chart {
        file: "cost_accuracy.svg",
        title: format!("Cost against {}", num.level_name()),
        caption: cost_caption(num, log),
        svg,
    })
}

fn cost_caption(num: Num, log: bool) -> String {
    format!(
        "Each trial's control (grey) and treatment (blue) condition: what it cost and the {} it \
         reached, with its confidence interval as an error bar; a line joins the two \
         conditions of a trial (labelled T1, T2, … as in the table).{}",
        num.level_name(),
        if log { " Costs spread over more than 10x, so the cost axis is logarithmic." } else { "" }
    )
}

/// The ranges of the cost chart's axes: cost (log10 of it when costs spread over 10x) and level.
struct CostAxes {
    any_cost: bool,
    log: bool,
    x: (f64, f64),
    y: (f64, f64),
}

fn cost_axes(pts: &[[Option<CostPoint>; 2]]) -> CostAxes {
    let all: Vec<CostPoint> = pts.iter().flatten().flatten().copied().collect();
    let costs: Vec<f64> = all.iter().map(|p| p.usd).collect();
    let any_cost = costs.iter().any(|c| *c > 0.0);
    let log = log_costs(&costs);
    let x = if log {
        span(costs.iter().map(|c| c.log10()), false, 0.15, 0.5)
    } else if any_cost {
        (0.0, span(costs.iter().copied(), true, 0.15, 1e-6).1)
    } else {
        (0.0, 1.0)
    };
    let levels = all.iter().flat_map(|p| {
        [Some(p.level), p.ci.map(|c| c[0]), p.ci.map(|c| c[1])].into_iter().flatten()
    });
    let (y0, y1) = span(levels, false, 0.2, 0.05);
    let y0 = y0.max(0.0);
    CostAxes { any_cost, log, x, y: (y0, y1.min(1.0).max(y0 + 0.01)) }
}

/// Each trial's control and treatment as (cost, level, interval), where both are known.
fn cost_points(agg: &Aggregate) -> Vec<[Option<CostPoint>; 2]> {
    let point = |t: &AggTrial, c: &str| {
        let stats = t.sig.as_ref()?.conditions.get(c)?;
        let usd = t.costs.as_ref()?.conditions.get(c)?.usd?;
        Some(CostPoint { usd, level: stats.mean?, ci: stats.ci })
    };
    agg.trials.iter().map(|t| [point(t, CONTROL), point(t, TREATMENT)]).collect()
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cost_axis_is_logarithmic_only_when_positive_costs_spread_over_ten_times() {
        assert!(log_costs(&[0.001, 0.02]));
        assert!(!log_costs(&[0.001, 0.009]));
        assert!(!log_costs(&[0.0, 0.5]), "a zero cost has no place on a log axis");
        let ticks = cost_ticks(-3.2, -1.1, true);
        assert!(ticks.contains(&-3.0) && ticks.contains(&-2.0));
        assert!(ticks.iter().all(|t| (-3.2..=-1.1).contains(t)));
        assert_eq!(cost_ticks(0.0, 1.0, false).len(), 6);
    }

    #[test]
    fn labels_of_points_at_the_same_place_do_not_overlap() {
        let points = vec![(100, 100); 5];
        let labels: Vec<String> = (1..=5).map(|i| format!("T{i}")).collect();
        let offs = place_labels(&points, &labels);
        let rects: Vec<(i32, i32, i32, i32)> = offs
            .iter()
            .zip(&labels)
            .map(|((dx, dy), l)| (100 + dx, 100 + dy, 100 + dx + 8 * l.len() as i32 + 4, 116 + dy))
            .collect();
        for (i, a) in rects.iter().enumerate() {
            for b in &rects[i + 1..] {
                let apart = a.2 <= b.0 || b.2 <= a.0 || a.3 <= b.1 || b.3 <= a.1;
                assert!(apart, "{a:?} overlaps {b:?}");
            }
        }
    }
}
