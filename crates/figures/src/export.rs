//! Exports of a drawn figure: the SVG itself, a vector PDF (svg2pdf, the font embedded as a
//! subset) and a PNG at 300 dpi (resvg) with its resolution recorded.

use resvg::{tiny_skia, usvg};

use crate::error::{FigureError, Result};
use crate::style::{FONT, FONT_FAMILY, Format, PNG_DPI};

fn parse(svg: &str) -> Result<usvg::Tree> {
    let mut options = usvg::Options {
        font_family: FONT_FAMILY.into(),
        ..usvg::Options::default()
    };
    let db = options.fontdb_mut();
    db.load_font_data(FONT.to_vec());
    db.set_sans_serif_family(FONT_FAMILY);
    usvg::Tree::from_str(svg, &options)
        .map_err(|e| FigureError::Export(format!("parsing the figure's SVG: {e}")))
}

/// The figure as `format`.
pub fn export(svg: &str, format: Format) -> Result<Vec<u8>> {
    match format {
        Format::Svg => Ok(svg.as_bytes().to_vec()),
        Format::Pdf => to_pdf(svg),
        Format::Png => to_png(svg, PNG_DPI),
    }
}

/// Vector PDF of the page size the SVG names; text stays text, its font embedded as a subset.
pub fn to_pdf(svg: &str) -> Result<Vec<u8>> {
    let tree = parse(svg)?;
    // usvg reads the inch sizes at 96 user units per inch; telling svg2pdf the same keeps the
    // page exactly the figure's physical size.
    svg2pdf::to_pdf(
        &tree,
        svg2pdf::ConversionOptions::default(),
        svg2pdf::PageOptions { dpi: 96.0 },
    )
    .map_err(|e| FigureError::Export(format!("converting the figure to PDF: {e}")))
}

/// PNG at `dpi`, white background, with the resolution recorded in its `pHYs` chunk.
pub fn to_png(svg: &str, dpi: f64) -> Result<Vec<u8>> {
    let tree = parse(svg)?;
    let scale = (dpi / 96.0) as f32;
    let size = tree.size();
    let (w, h) = (
        (size.width() * scale).round() as u32,
        (size.height() * scale).round() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| FigureError::Export("allocating the PNG canvas".into()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    let rgba: Vec<u8> = pixmap
        .pixels()
        .iter()
        .flat_map(|p| {
            let c = p.demultiply();
            [c.red(), c.green(), c.blue(), c.alpha()]
        })
        .collect();
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_pixel_dims(Some(png::PixelDimensions {
            xppu: (dpi / 0.0254).round() as u32,
            yppu: (dpi / 0.0254).round() as u32,
            unit: png::Unit::Meter,
        }));
        let mut writer = encoder.write_header().map_err(png_err)?;
        writer.write_image_data(&rgba).map_err(png_err)?;
    }
    Ok(out)
}

fn png_err(e: png::EncodingError) -> FigureError {
    FigureError::Export(format!("writing the PNG: {e}"))
}
