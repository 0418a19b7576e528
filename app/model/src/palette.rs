//! Frame colours beyond the package palette of [`crate::layout::frame_color`]: a heat scale by
//! self value, and the change that fits any frame colour onto a dark background. Colours are
//! `(hue, saturation%, lightness%)`, as everywhere in the layout.

/// What a frame's colour tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColourMode {
    /// Frames of one package share a warm colour ([`crate::layout::frame_color`]).
    #[default]
    Package,
    /// The more samples a frame holds itself, the hotter ([`heat_color`]).
    SelfValue,
}

impl ColourMode {
    /// The mode a URL names (`package`, `self`); anything else is the default.
    pub fn parse(text: &str) -> ColourMode {
        match text {
            "self" => ColourMode::SelfValue,
            _ => ColourMode::Package,
        }
    }

    /// The URL's name for this mode (see [`ColourMode::parse`]).
    pub fn as_str(self) -> &'static str {
        match self {
            ColourMode::Package => "package",
            ColourMode::SelfValue => "self",
        }
    }
}

/// The heat colour of a frame holding `self_value` samples itself, when the frame with the most
/// holds `max_self`: pale yellow for nothing, deep red for the most.
///
/// The scale follows the square root of the share: self values are skewed (a few hot leaves,
/// many small frames), and a linear scale would paint all but the hottest frames the same pale.
pub fn heat_color(self_value: u64, max_self: u64) -> (u16, u8, u8) {
    let share = if max_self == 0 { 0.0 } else { (self_value.min(max_self) as f64 / max_self as f64).sqrt() };
    let mix = |cold: f64, hot: f64| (cold + (hot - cold) * share).round();
    (mix(50.0, 0.0) as u16, mix(35.0, 85.0) as u8, mix(86.0, 45.0) as u8)
}

/// `colour` for a dark background: lightness turned around, so that what stands out on a light
/// background (dark, saturated) still does, and what is faded (light, near white) sinks towards
/// the background instead of glaring. Kept within 20–45% so that light text stays readable.
pub fn for_dark((hue, saturation, lightness): (u16, u8, u8)) -> (u16, u8, u8) {
    let turned = 12.0 + (100.0 - f64::from(lightness.min(100))) * 0.6;
    (hue, saturation, turned.round().clamp(20.0, 45.0) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn modes_round_trip_through_the_url() {
        for mode in [ColourMode::Package, ColourMode::SelfValue] {
            assert_eq!(ColourMode::parse(mode.as_str()), mode);
        }
        assert_eq!(ColourMode::parse("unknown"), ColourMode::Package);
    }

    #[test]
    fn heat_runs_from_pale_to_red() {
        assert_eq!(heat_color(0, 100), (50, 35, 86));
        assert_eq!(heat_color(100, 100), (0, 85, 45));
        assert_eq!(heat_color(25, 100), (25, 60, 66), "a quarter of the hottest is half way");
        assert_eq!(heat_color(5, 0), heat_color(0, 1), "an empty profile is all cold");
    }

    #[test]
    fn dark_keeps_hue_and_flips_lightness() {
        assert_eq!(for_dark((30, 80, 60)), (30, 80, 36));
        assert_eq!(for_dark((0, 0, 92)), (0, 0, 20), "faded frames sink towards the background");
        assert_eq!(for_dark((0, 85, 45)).2, 45);
    }

    proptest! {
        #[test]
        fn hotter_is_never_paler(a in 0u64..1000, b in 0u64..1000, max in 1u64..1000) {
            let (low, high) = (a.min(b), a.max(b));
            prop_assert!(heat_color(high, max).2 <= heat_color(low, max).2);
            prop_assert!(heat_color(high, max).0 <= heat_color(low, max).0);
        }

        #[test]
        fn dark_colours_stay_in_the_readable_band(h in 0u16..360, s in 0u8..=100, l in 0u8..=100) {
            let (h2, s2, l2) = for_dark((h, s, l));
            prop_assert_eq!((h2, s2), (h, s));
            prop_assert!((20..=45).contains(&l2));
        }
    }
}
