//! Frames rasterised in memory: one RGBA image holds every rectangle of a redraw, and the
//! canvas receives it in a single `putImageData`.
//!
//! Drawing a zoomed million-stack profile meant about 2 600 `fillRect` calls, each a crossing
//! into JS plus a software raster of an antialiased rectangle: together more than half of a
//! redraw. Filling spans of a byte buffer costs a fraction of that. Edges snap to whole device
//! pixels, so frames are crisp rather than antialiased; labels and outlines are still drawn by
//! the canvas on top.

/// An RGBA image, row by row, four bytes per pixel, always opaque.
#[derive(Debug, Clone, Default)]
pub struct Pixmap {
    width: usize,
    height: usize,
    data: Vec<u8>,
}

impl Pixmap {
    /// A `width` × `height` image filled with `background`.
    pub fn new(width: u32, height: u32, background: [u8; 3]) -> Pixmap {
        let mut pixmap = Pixmap::default();
        pixmap.reset(width, height, background);
        pixmap
    }

    /// Resizes to `width` × `height` and fills with `background`, keeping the allocation: a
    /// redraw reuses the previous one's buffer.
    pub fn reset(&mut self, width: u32, height: u32, background: [u8; 3]) {
        self.resize(width, height);
        repeat_pixel(&mut self.data, [background[0], background[1], background[2], 255]);
    }

    /// Resizes to `width` × `height` without filling: a redraw that repaints only some lines
    /// ([`Pixmap::fill_line`], [`Pixmap::copy_line_down`]) and hands on only those saves
    /// writing the whole image once. The pixels are the previous image's (or zero when the
    /// size changed).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width as usize;
        self.height = height as usize;
        let len = self.width * self.height * 4;
        if self.data.len() != len {
            // A fresh zeroed allocation, not `Vec::resize`: that wrote the zeros one byte at a
            // time in the size-optimised wasm build, a third of a redraw.
            self.data = vec![0; len];
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width as u32
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height as u32
    }

    /// The pixels, RGBA, row by row.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The pixel at (`x`, `y`) as RGBA.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 4]> {
        let (x, y) = (x as usize, y as usize);
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y * self.width + x) * 4;
        Some([self.data[i], self.data[i + 1], self.data[i + 2], self.data[i + 3]])
    }

    /// Fills the rectangle from (`left`, `top`) to (`right`, `bottom`), in pixels. Edges round
    /// to the nearest pixel boundary, and a rectangle keeps at least one pixel each way, so a
    /// frame never vanishes; whatever falls outside the image is clipped.
    pub fn fill(&mut self, left: f64, top: f64, right: f64, bottom: f64, rgb: [u8; 3]) {
        let (y0, y1) = snap(top, bottom, self.height);
        if y0 < y1 {
            self.fill_line(y0 as u32, left, right, rgb);
            self.copy_line_down(y0 as u32, y1 as u32);
        }
    }

    /// Fills the span from `left` to `right` (snapped as [`Pixmap::fill`] snaps) on line `y`
    /// only. Frames of one row share their lines: filling each frame's first line and then
    /// copying whole lines down ([`Pixmap::copy_line_down`]) moves far fewer, far longer runs
    /// of bytes than filling each rectangle line by line.
    pub fn fill_line(&mut self, y: u32, left: f64, right: f64, rgb: [u8; 3]) {
        let y = y as usize;
        let (x0, x1) = snap(left, right, self.width);
        if y >= self.height || x0 >= x1 {
            return;
        }
        let line = y * self.width;
        repeat_pixel(&mut self.data[(line + x0) * 4..(line + x1) * 4], [rgb[0], rgb[1], rgb[2], 255]);
    }

    /// Copies line `y` over every line below it up to `bottom` (exclusive, clipped).
    pub fn copy_line_down(&mut self, y: u32, bottom: u32) {
        let (y, bottom) = (y as usize, (bottom as usize).min(self.height));
        let stride = self.width * 4;
        for below in y + 1..bottom {
            self.data.copy_within(y * stride..(y + 1) * stride, below * stride);
        }
    }
}

/// Fills `span` (whole pixels) with `pixel` by doubling copies: a handful of `memcpy`s where a
/// loop over pixels ran twenty times slower in the size-optimised wasm build.
fn repeat_pixel(span: &mut [u8], pixel: [u8; 4]) {
    if span.len() < 4 {
        return;
    }
    span[..4].copy_from_slice(&pixel);
    let mut filled = 4;
    while filled < span.len() {
        let n = filled.min(span.len() - filled);
        span.copy_within(0..n, filled);
        filled += n;
    }
}

/// Pixel bounds `[start, end)` of the span from `from` to `to`, at least one pixel long,
/// clipped to `[0, limit)`.
fn snap(from: f64, to: f64, limit: usize) -> (usize, usize) {
    // Comparisons, not `f64::max`/`min`: those are calls in the size-optimised wasm build.
    let start = from.round();
    let start = if start > 0.0 { start } else { 0.0 };
    let end = to.round();
    let end = if end > start + 1.0 { end } else { start + 1.0 };
    let limit = limit as f64;
    let clip = |v: f64| (if v < limit { v } else { limit }) as usize;
    (clip(start), clip(end))
}

/// An `(hue°, saturation%, lightness%)` colour as sRGB bytes, as CSS's `hsl()` converts it.
pub fn hsl_to_rgb((hue, saturation, lightness): (u16, u8, u8)) -> [u8; 3] {
    let h = f64::from(hue % 360) / 360.0;
    let s = f64::from(saturation.min(100)) / 100.0;
    let l = f64::from(lightness.min(100)) / 100.0;
    let q = if l < 0.5 { l * (1.0 + s) } else { l + s - l * s };
    let p = 2.0 * l - q;
    let channel = |t: f64| {
        let t = t.rem_euclid(1.0);
        let v = if t < 1.0 / 6.0 {
            p + (q - p) * 6.0 * t
        } else if t < 0.5 {
            q
        } else if t < 2.0 / 3.0 {
            p + (q - p) * (2.0 / 3.0 - t) * 6.0
        } else {
            p
        };
        (v * 255.0).round().clamp(0.0, 255.0) as u8
    };
    [channel(h + 1.0 / 3.0), channel(h), channel(h - 1.0 / 3.0)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WHITE: [u8; 3] = [255, 255, 255];

    #[test]
    fn converts_like_css() {
        assert_eq!(hsl_to_rgb((0, 100, 50)), [255, 0, 0]);
        assert_eq!(hsl_to_rgb((120, 100, 25)), [0, 128, 0]);
        assert_eq!(hsl_to_rgb((240, 100, 50)), [0, 0, 255]);
        assert_eq!(hsl_to_rgb((0, 0, 50)), [128, 128, 128]);
        assert_eq!(hsl_to_rgb((360, 0, 100)), [255, 255, 255]);
        // hsl(36 14% 82%), the aggregate blocks' colour: rgb(216, 210, 203) in browsers.
        assert_eq!(hsl_to_rgb((36, 14, 82)), [216, 210, 203]);
    }

    #[test]
    fn fills_whole_pixels_and_keeps_thin_rectangles() {
        let mut p = Pixmap::new(10, 4, WHITE);
        p.fill(2.4, 1.0, 5.6, 3.0, [1, 2, 3]);
        // x from round(2.4) = 2 to round(5.6) = 6, rows 1 and 2.
        for x in 0..10 {
            for y in 0..4 {
                let inside = (2..6).contains(&x) && (1..3).contains(&y);
                assert_eq!(p.pixel(x, y), Some(if inside { [1, 2, 3, 255] } else { [255, 255, 255, 255] }), "{x},{y}");
            }
        }
        // A sliver narrower than a pixel still shows as one.
        p.fill(8.1, 0.0, 8.2, 1.0, [9, 9, 9]);
        assert_eq!(p.pixel(8, 0), Some([9, 9, 9, 255]));
        assert_eq!(p.pixel(9, 0), Some([255, 255, 255, 255]));
    }

    #[test]
    fn clips_at_the_edges() {
        let mut p = Pixmap::new(4, 2, WHITE);
        p.fill(-5.0, -1.0, 100.0, 100.0, [0, 0, 0]);
        assert!(p.data().chunks(4).all(|px| px == [0, 0, 0, 255]));
        p.fill(10.0, 0.0, 12.0, 1.0, [7, 7, 7]);
        assert!(p.data().chunks(4).all(|px| px == [0, 0, 0, 255]));
        p.reset(3, 1, WHITE);
        assert_eq!(p.data().len(), 12);
        assert_eq!(p.pixel(2, 0), Some([255, 255, 255, 255]));
        assert_eq!(p.pixel(3, 0), None);
    }

    #[test]
    fn lines_copy_down_within_the_image() {
        let mut p = Pixmap::new(6, 5, WHITE);
        p.fill_line(1, 1.0, 3.0, [4, 4, 4]);
        p.fill_line(1, 4.0, 6.0, [5, 5, 5]);
        p.copy_line_down(1, 3);
        for y in 0..5 {
            let expect = |x: u32| match (y, x) {
                (1 | 2, 1 | 2) => [4, 4, 4, 255],
                (1 | 2, 4 | 5) => [5, 5, 5, 255],
                _ => [255, 255, 255, 255],
            };
            for x in 0..6 {
                assert_eq!(p.pixel(x, y), Some(expect(x)), "{x},{y}");
            }
        }
        p.copy_line_down(4, 99);
        p.fill_line(7, 0.0, 6.0, [0, 0, 0]);
        assert!(p.data().chunks(4).filter(|px| px[0] == 0).count() == 0);
    }

    #[test]
    fn resizing_keeps_the_pixels_of_the_same_size() {
        let mut p = Pixmap::new(3, 2, WHITE);
        p.fill_line(0, 0.0, 1.0, [1, 2, 3]);
        p.resize(3, 2);
        assert_eq!(p.pixel(0, 0), Some([1, 2, 3, 255]));
        p.resize(2, 2);
        assert_eq!((p.width(), p.height(), p.data().len()), (2, 2, 16));
    }

    proptest! {
        /// Exactly the snapped rectangle changes, whatever the coordinates.
        #[test]
        fn fill_changes_only_the_snapped_rectangle(
            w in 1u32..40, h in 1u32..10,
            left in -10.0f64..50.0, width in 0.0f64..30.0,
            top in -3.0f64..12.0, height in 0.0f64..6.0,
        ) {
            let mut p = Pixmap::new(w, h, WHITE);
            p.fill(left, top, left + width, top + height, [0, 0, 0]);
            let (x0, x1) = snap(left, left + width, w as usize);
            let (y0, y1) = snap(top, top + height, h as usize);
            for x in 0..w {
                for y in 0..h {
                    let inside = (x0..x1).contains(&(x as usize)) && (y0..y1).contains(&(y as usize));
                    prop_assert_eq!(p.pixel(x, y).unwrap()[0] == 0, inside);
                }
            }
        }
    }
}
