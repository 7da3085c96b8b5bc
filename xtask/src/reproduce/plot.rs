//! The figures, in the style of the paper's Figures 3–5: per dataset, test error (%) and train
//! loss (log scale) per epoch, one line per configuration (mean over seeds) and a band from the
//! lowest to the highest seed.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::Plan;
use super::report::{ConfigRuns, EpochRow, PanelRuns};

const ROW_HEIGHT: u32 = 460;
const WIDTH: u32 = 1400;

/// Line colours by legend label, stable across figures.
fn color(label: &str, index: usize) -> RGBColor {
    match label {
        "fixed 0.9" => RGBColor(0, 0, 0),
        "fixed 0.95" => RGBColor(128, 128, 128),
        "LCAM 0.95/0.9" => RGBColor(214, 39, 40),
        "LCAM 0.9/0.95" => RGBColor(31, 119, 180),
        "LCAM 0.93/0.9" => RGBColor(44, 160, 44),
        _ => {
            let (r, g, b) = Palette99::pick(index).to_rgba().rgb();
            RGBColor(r, g, b)
        }
    }
}

fn register_fonts() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .and_then(|()| register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold()))
            .map_err(|_| anyhow!("the embedded DejaVu Sans font does not parse"));
    });
    result
}

/// A metric at one epoch over seeds: `(epoch, mean, min, max)`.
type Band = (f64, f64, f64, f64);

/// A configuration's legend label and its bands.
type Series = (String, Vec<Band>);

/// What one chart shows.
struct Metric<'a> {
    title: String,
    value: &'a dyn Fn(&EpochRow) -> f64,
    y_desc: &'a str,
    /// Log scale when the values span more than a factor 5.
    log: bool,
}

/// Per epoch: (mean, min, max) over seeds of `f`.
fn bands(runs: &ConfigRuns, f: impl Fn(&EpochRow) -> f64) -> Vec<Band> {
    let epochs = runs.seeds.iter().map(Vec::len).min().unwrap_or(0);
    (0..epochs)
        .map(|e| {
            let v: Vec<f64> = runs.seeds.iter().map(|s| f(&s[e])).collect();
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            ((e + 1) as f64, mean, lo, hi)
        })
        .collect()
}

/// Draws one chart: a metric per epoch for every configuration of a panel.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    plan: &Plan,
    panel: usize,
    runs: &PanelRuns,
    m: &Metric<'_>,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    let (title, y_desc, log) = (m.title.as_str(), m.y_desc, m.log);
    let series: Vec<Series> = plan.panels[panel]
        .configs
        .iter()
        .zip(runs)
        .map(|(c, r)| (c.label(), bands(r, m.value)))
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, b) in &series {
        for &(_, _, l, h) in b {
            lo = lo.min(l);
            hi = hi.max(h);
        }
    }
    if !lo.is_finite() || !hi.is_finite() {
        // Nothing finished yet (a partial report): an empty chart with its axes.
        (lo, hi) = (0.0, 1.0);
    }
    let epochs = plan.protocol.epochs as f64;
    let x = 1.0..epochs.max(2.0);
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    let epochs_u = plan.protocol.epochs.max(2) as usize;
    let x_labels = epochs_u.min(11);
    let light = RGBColor(235, 235, 235);
    // A loss that spans less than a decade reads better on a linear axis.
    if log && hi > 5.0 * lo.max(f64::MIN_POSITIVE) {
        let lo = (lo * 0.8).max(1e-6);
        let hi = hi * 1.25;
        let mut ch = builder
            .build_cartesian_2d(x, (lo..hi).log_scale())
            .map_err(err)?;
        ch.configure_mesh()
            .x_desc("epoch")
            .y_desc(format!("{y_desc} (log scale)"))
            .x_labels(x_labels)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(light)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        lines(&mut ch, &series).map_err(err)?;
    } else {
        let pad = ((hi - lo) * 0.05).max(if log { 1e-3 } else { 0.5 });
        let mut ch = builder
            .build_cartesian_2d(x, (lo - pad)..(hi + pad))
            .map_err(err)?;
        ch.configure_mesh()
            .x_desc("epoch")
            .y_desc(y_desc)
            .x_labels(x_labels)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .light_line_style(light)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(err)?;
        lines(&mut ch, &series).map_err(err)?;
    }
    Ok(())
}

/// Bands, mean lines and the legend of every configuration.
fn lines<'a, DB, CT>(
    ch: &mut ChartContext<'a, DB, CT>,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate<From = (f64, f64)>,
{
    for (i, (label, b)) in series.iter().enumerate() {
        let c = color(label, i);
        draw_band(ch, b, c)?;
        ch.draw_series(LineSeries::new(
            b.iter().map(|p| (p.0, p.1)),
            c.stroke_width(2),
        ))?
        .label(label.as_str())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2)));
    }
    ch.configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
}

/// The min–max band over seeds as a translucent polygon.
fn draw_band<DB, CT>(
    ch: &mut ChartContext<'_, DB, CT>,
    b: &[Band],
    c: RGBColor,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>
where
    DB: DrawingBackend,
    CT: CoordTranslate<From = (f64, f64)>,
{
    if b.len() < 2 {
        return Ok(());
    }
    let mut pts: Vec<(f64, f64)> = b.iter().map(|p| (p.0, p.3)).collect();
    pts.extend(b.iter().rev().map(|p| (p.0, p.2)));
    ch.plotting_area()
        .draw(&Polygon::new(pts, c.mix(0.18).filled()))
}

/// Draws the whole figure `fig` on `root`.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    plan: &Plan,
    results: &[PanelRuns],
    fig: u8,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("{e}");
    root.fill(&WHITE).map_err(err)?;
    let panels: Vec<usize> = (0..plan.panels.len())
        .filter(|&i| plan.panels[i].figure == fig)
        .collect();
    let p = &plan.protocol;
    let root = root
        .titled(
            &format!(
                "Figure {fig} — {}, {} epochs, {} seed(s), preset {} (band: min–max over seeds)",
                p.model, p.epochs, plan.seeds, p.preset
            ),
            ("sans-serif", 24),
        )
        .map_err(err)?;
    let rows = root.split_evenly((panels.len(), 2));
    for (k, &pi) in panels.iter().enumerate() {
        let title = plan.panels[pi].title();
        let error = Metric {
            title: format!("{title}: test error"),
            value: &|r| 100.0 * (1.0 - r.test_acc),
            y_desc: "test error (%)",
            log: false,
        };
        let loss = Metric {
            title: format!("{title}: train loss"),
            value: &|r| r.train_loss,
            y_desc: "train loss",
            log: true,
        };
        chart(&rows[2 * k], plan, pi, &results[pi], &error)?;
        chart(&rows[2 * k + 1], plan, pi, &results[pi], &loss)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `<base>.png` and `<base>.svg` for figure `fig` (each via a temporary file renamed
/// into place).
pub fn figure(plan: &Plan, results: &[PanelRuns], fig: u8, base: &Path) -> Result<()> {
    register_fonts()?;
    let rows = plan.panels.iter().filter(|p| p.figure == fig).count() as u32;
    let size = (WIDTH, 40 + ROW_HEIGHT * rows.max(1));

    let mut svg = String::new();
    draw(
        SVGBackend::with_string(&mut svg, size).into_drawing_area(),
        plan,
        results,
        fig,
    )?;
    super::write_atomic(&base.with_extension("svg"), svg.as_bytes())?;

    let png = base.with_extension("png");
    let stem = base
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    // The encoder picks the format by extension, so the temporary name ends in .png too.
    let tmp = base.with_file_name(format!(".{stem}.partial.png"));
    draw(
        BitMapBackend::new(&tmp, size).into_drawing_area(),
        plan,
        results,
        fig,
    )?;
    std::fs::rename(&tmp, &png)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), png.display()))?;
    Ok(())
}
