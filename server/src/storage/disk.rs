//! The free-disk floor (`--min-free-disk`): below it, uploads are refused before they reach
//! the write-ahead log.
//!
//! Why a floor and not a cap on the log: while the object store is unreachable the log is
//! the only copy of every acknowledged upload, so it must be allowed to grow with the outage
//! (memory stays flat; see `FROZEN_IN_MEMORY`). What must not happen is the disk filling up
//! completely: then the log cannot be appended (uploads fail with a 500) and, worse, a new
//! segment cannot be started. Refusing early, with room left, keeps what is stored intact
//! and readable, and ingest resumes by itself once published blocks free their segments.

use std::fmt;
use std::path::Path;

use kiln_model::units::format_bytes;

/// The least free space the data directory's file system must keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskFloor {
    /// No floor.
    Off,
    /// At least this many bytes free.
    Bytes(u64),
    /// At least this percentage of the file system free.
    Percent(f64),
}

impl Default for DiskFloor {
    fn default() -> Self {
        DiskFloor::Bytes(1 << 30)
    }
}

impl fmt::Display for DiskFloor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskFloor::Off => write!(f, "0"),
            DiskFloor::Bytes(bytes) => write!(f, "{}", format_bytes(*bytes)),
            DiskFloor::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

impl DiskFloor {
    /// Parses `--min-free-disk`: `0` (no floor), a size (`1GiB`, `500MiB`, `2G`, `10TB`,
    /// plain bytes) or a percentage of the file system (`5%`). `K`/`M`/`G`/`T` and
    /// `KiB`…`TiB` are powers of 1024, `KB`…`TB` powers of 1000.
    pub fn parse(text: &str) -> Result<DiskFloor, String> {
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let percent: f64 = percent.trim().parse().map_err(|_| format!("`{text}` is not a percentage like 5%"))?;
            if !(0.0..=100.0).contains(&percent) {
                return Err(format!("`{text}`: a percentage is between 0% and 100%"));
            }
            return Ok(if percent == 0.0 { DiskFloor::Off } else { DiskFloor::Percent(percent) });
        }
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| format!("`{text}` is not a size like 1GiB, 500MiB or 5%"))?;
        let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => return Err(format!("unknown unit `{other}` in `{text}`: use B, KiB, MiB, GiB, TiB or %")),
        };
        let bytes = number.checked_mul(factor).ok_or_else(|| format!("`{text}` is too large"))?;
        Ok(if bytes == 0 { DiskFloor::Off } else { DiskFloor::Bytes(bytes) })
    }

    /// The floor in bytes on a file system of `total` bytes.
    pub fn bytes(&self, total: u64) -> u64 {
        match *self {
            DiskFloor::Off => 0,
            DiskFloor::Bytes(bytes) => bytes,
            DiskFloor::Percent(percent) => (total as f64 * percent / 100.0) as u64,
        }
    }
}

/// Free bytes (available to this user) and total bytes of the file system holding `path`.
// `c_ulong` and `fsblkcnt_t` are `u64` on 64-bit Linux, not on every target.
#[allow(clippy::unnecessary_cast)]
pub fn space(path: &Path) -> std::io::Result<(u64, u64)> {
    let stats = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let unit = stats.fragment_size() as u64;
    Ok(((stats.blocks_available() as u64).saturating_mul(unit), (stats.blocks() as u64).saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floors_parse() {
        assert_eq!(DiskFloor::parse("0"), Ok(DiskFloor::Off));
        assert_eq!(DiskFloor::parse("0%"), Ok(DiskFloor::Off));
        assert_eq!(DiskFloor::parse("1GiB"), Ok(DiskFloor::Bytes(1 << 30)));
        assert_eq!(DiskFloor::parse("1G"), Ok(DiskFloor::Bytes(1 << 30)));
        assert_eq!(DiskFloor::parse("500 MiB"), Ok(DiskFloor::Bytes(500 << 20)));
        assert_eq!(DiskFloor::parse("2GB"), Ok(DiskFloor::Bytes(2_000_000_000)));
        assert_eq!(DiskFloor::parse("100000T"), Ok(DiskFloor::Bytes(100_000 << 40)));
        assert_eq!(DiskFloor::parse("4096"), Ok(DiskFloor::Bytes(4096)));
        assert_eq!(DiskFloor::parse("5%"), Ok(DiskFloor::Percent(5.0)));
        assert_eq!(DiskFloor::parse("2.5%"), Ok(DiskFloor::Percent(2.5)));
        assert!(DiskFloor::parse("101%").is_err());
        assert!(DiskFloor::parse("-1").is_err());
        assert!(DiskFloor::parse("1PB").is_err());
        assert!(DiskFloor::parse("99999999999T").is_err(), "overflow is an error, not a wrap");
        assert_eq!(DiskFloor::Percent(10.0).bytes(1000), 100);
        assert_eq!(DiskFloor::default().to_string(), "1.0 GiB");
    }

    #[test]
    fn the_data_directory_has_a_size() {
        let dir = tempfile::tempdir().unwrap();
        let (free, total) = space(dir.path()).unwrap();
        assert!(total > 0 && free <= total, "{free} of {total}");
    }
}
