//! One SVG bar chart per result row: an engine per bar at its median, with a whisker
//! from the slowest to the fastest repetition.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{Spread, thousands};
use crate::run::Result;

pub struct Bar {
    pub label: String,
    pub spread: Spread,
}

/// One colour per bar position, colour-blind safe (Okabe–Ito).
const COLOURS: [RGBColor; 5] = [
    RGBColor(0, 114, 178),
    RGBColor(230, 159, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(86, 180, 233),
];

pub fn bars(path: &Path, title: &str, unit: &str, bars: &[Bar]) -> Result<()> {
    if bars.is_empty() {
        return Ok(());
    }
    let top = bars.iter().map(|b| b.spread.max).fold(0.0, f64::max).max(1.0) * 1.15;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{title} ({unit}, higher is better)"), ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(90)
        .build_cartesian_2d((0..n).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => {
                bars.get(*i as usize).map(|b| b.label.clone()).unwrap_or_default()
            }
            _ => String::new(),
        })
        .y_desc(unit)
        .y_label_formatter(&|v| thousands(*v))
        .draw()?;
    chart.draw_series(bars.iter().zip(0..).map(|(b, i)| {
        let mut bar = Rectangle::new(
            [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), b.spread.median)],
            COLOURS[i as usize % COLOURS.len()].filled(),
        );
        bar.set_margin(0, 0, 14, 14);
        bar
    }))?;
    chart.draw_series(bars.iter().zip(0..).map(|(b, i)| {
        ErrorBar::new_vertical(
            SegmentValue::CenterOf(i),
            b.spread.min,
            b.spread.median,
            b.spread.max,
            BLACK.stroke_width(1),
            10,
        )
    }))?;
    chart.draw_series(bars.iter().zip(0..).map(|(b, i)| {
        Text::new(
            thousands(b.spread.median),
            (SegmentValue::CenterOf(i), b.spread.max + top * 0.02),
            TextStyle::from(("sans-serif", 14).into_font())
                .pos(Pos::new(HPos::Center, VPos::Bottom)),
        )
    }))?;
    root.present()?;
    Ok(())
}
