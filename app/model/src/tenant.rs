//! Tenants: whose data a request reads or writes.
//!
//! A gateway in front of Kiln (or an agent configured with a tenant id) names the tenant in
//! the `X-Scope-OrgID` header, as Grafana Pyroscope, Mimir and Loki read it. Requests without
//! it belong to [`DEFAULT_TENANT`], so a single-tenant setup never thinks about tenants.
//!
//! The allowed characters are those Mimir allows (letters, digits and `!-_.*'()`, at most 150
//! bytes, not `.` or `..`), so a header that works with the rest of a Grafana stack works
//! here, and a tenant id is always safe inside a path, a key or a log line.

/// The header that names the tenant.
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// The tenant of requests that name none.
pub const DEFAULT_TENANT: &str = "anonymous";

/// Longest accepted tenant id, in bytes.
pub const MAX_TENANT_LEN: usize = 150;

/// The tenant a request names: `None` (no header) is [`DEFAULT_TENANT`]; anything else must
/// be a valid id. The error says what is wrong, for a 400.
pub fn tenant_from_header(value: Option<&[u8]>) -> Result<String, String> {
    let Some(raw) = value else {
        return Ok(DEFAULT_TENANT.to_string());
    };
    let id = std::str::from_utf8(raw).map_err(|_| "X-Scope-OrgID is not UTF-8".to_string())?.trim();
    if id.is_empty() {
        return Err("X-Scope-OrgID is empty; leave the header out for the default tenant".into());
    }
    if id.len() > MAX_TENANT_LEN {
        return Err(format!("X-Scope-OrgID is longer than {MAX_TENANT_LEN} bytes"));
    }
    if id == "." || id == ".." {
        return Err(format!("X-Scope-OrgID `{id}` is not a valid tenant id"));
    }
    if let Some(bad) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c))) {
        return Err(format!("X-Scope-OrgID `{id}` contains `{bad}`; tenant ids use letters, digits and !-_.*'() only"));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_checked() {
        assert_eq!(tenant_from_header(None).unwrap(), DEFAULT_TENANT);
        assert_eq!(tenant_from_header(Some(b"team-a")).unwrap(), "team-a");
        assert_eq!(tenant_from_header(Some(b" Org_1.(prod)* ")).unwrap(), "Org_1.(prod)*");
        for bad in [&b""[..], b"  ", b".", b"..", b"a/b", b"a|b", b"a b", b"caf\xc3\xa9", b"\xff", &[b'a'; 151]] {
            assert!(tenant_from_header(Some(bad)).is_err(), "{bad:?}");
        }
        assert!(tenant_from_header(Some(&[b'a'; 150])).is_ok());
    }
}
