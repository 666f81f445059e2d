//! Charts drawn by `plotters` into SVG text. Labels are our own words (months, days, levels),
//! never log content; plotters escapes text in SVG all the same.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::model::Chart;
use crate::{Error, Result};

/// Width and height in SVG pixels (the PDF scales the image to the text width).
const SIZE: (u32, u32) = (720, 280);
const FONT: &str = "sans-serif";

fn err(e: impl std::fmt::Display) -> Error {
    Error::Chart(e.to_string())
}

/// One layer of a stacked bar chart.
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) color: RGBColor,
    pub(crate) values: Vec<u64>,
}

/// Stacked bars: one bar per label, one layer per series (bottom first).
pub(crate) fn stacked_bars(labels: &[String], series: &[Series<'_>]) -> Result<Chart> {
    // plotters' integer ranges include their end: 0..n-1 is n bars.
    let n = labels.len().max(2) as u32;
    let mut cum: Vec<Vec<u64>> = Vec::with_capacity(series.len() + 1);
    cum.push(vec![0; n as usize]);
    for s in series {
        let prev = cum.last().expect("starts with the zero layer").clone();
        cum.push(
            prev.iter()
                .enumerate()
                .map(|(i, p)| p + s.values.get(i).copied().unwrap_or(0))
                .collect(),
        );
    }
    let max = cum
        .last()
        .and_then(|c| c.iter().max().copied())
        .unwrap_or(0);
    let top = nice_top(max);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d((0u32..n - 1).into_segmented(), 0u64..top)
            .map_err(err)?;
        let at = |v: &SegmentValue<u32>| match v {
            SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => *i as usize,
            SegmentValue::Last => usize::MAX,
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_labels(labels.len().max(1))
            .x_label_formatter(&|v| labels.get(at(v)).cloned().unwrap_or_default())
            .y_labels(5)
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        for (k, s) in series.iter().enumerate() {
            let (lo, hi) = (&cum[k], &cum[k + 1]);
            chart
                .draw_series(
                    Histogram::vertical(&chart)
                        .style(s.color.filled())
                        .margin(6)
                        .baseline_func(move |v| lo.get(at(v)).copied().unwrap_or(0))
                        .data((0..n).map(|i| (i, hi[i as usize]))),
                )
                .map_err(err)?
                .label(s.name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], s.color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((FONT, 13))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Chart { svg })
}

/// A line over labelled points (events per day).
pub(crate) fn line(labels: &[String], values: &[u64], color: RGBColor) -> Result<Chart> {
    // The axis spans every label; the line only the values given (a month still running).
    let n = labels.len().max(values.len()).max(2) as u32;
    let top = nice_top(values.iter().copied().max().unwrap_or(0));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(28)
            .y_label_area_size(64)
            .build_cartesian_2d(0u32..n - 1, 0u64..top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_labels(labels.len().clamp(2, 16))
            .x_label_formatter(&|i| labels.get(*i as usize).cloned().unwrap_or_default())
            .y_labels(5)
            .label_style((FONT, 13))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, v)| (i as u32, *v)),
                color.stroke_width(2),
            ))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Chart { svg })
}

/// A round axis top above `max` (at least 1, so an empty month still draws an axis).
fn nice_top(max: u64) -> u64 {
    if max < 5 {
        return 5;
    }
    let mag = 10u64.pow((max as f64).log10().floor() as u32);
    for step in [1, 2, 5, 10] {
        let top = step * mag;
        if top > max {
            return top;
        }
    }
    10 * mag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_escape_labels_and_draw_every_layer() {
        let labels = vec!["<b>".to_string(), "Nov".to_string()];
        let c = stacked_bars(
            &labels,
            &[
                Series {
                    name: "low",
                    color: BLUE,
                    values: vec![1, 2],
                },
                Series {
                    name: "high",
                    color: RED,
                    values: vec![3, 0],
                },
            ],
        )
        .unwrap();
        assert!(c.svg.starts_with("<svg"));
        assert!(!c.svg.contains("<b>"), "labels are escaped");
        assert!(c.svg.contains("&lt;b&gt;"));
        assert!(
            c.svg.contains("high") && c.svg.contains("low"),
            "legend names every layer"
        );
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_top(0), 5);
        assert_eq!(nice_top(7), 10);
        assert_eq!(nice_top(10), 20);
        assert_eq!(nice_top(180), 200);
        assert_eq!(nice_top(4_000_000), 5_000_000);
    }
}
