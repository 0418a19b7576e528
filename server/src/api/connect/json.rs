//! protojson by hand, for the few messages Kiln reads and writes: field names in lowerCamelCase
//! (the proto names accepted on input too), 64-bit integers as JSON strings on output (numbers
//! or strings on input), enums by name, fields at their default value left out.

use serde_json::{Map, Value};

/// A request's JSON object; `null` fields read as absent.
pub struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// The object `value` is (a message is always one).
    pub fn of(value: &'a Value, what: &str) -> Result<Fields<'a>, String> {
        value.as_object().map(Fields).ok_or_else(|| format!("{what} must be a JSON object"))
    }

    /// The field under its JSON name or its proto name.
    fn get(&self, json_name: &str, proto_name: &str) -> Option<&'a Value> {
        self.0.get(json_name).or_else(|| self.0.get(proto_name)).filter(|v| !v.is_null())
    }

    /// A string field; absent is empty.
    pub fn string(&self, json_name: &str, proto_name: &str) -> Result<String, String> {
        match self.get(json_name, proto_name) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(_) => Err(format!("`{json_name}` must be a string")),
        }
    }

    /// A repeated string field; absent is empty.
    pub fn strings(&self, json_name: &str, proto_name: &str) -> Result<Vec<String>, String> {
        match self.get(json_name, proto_name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("`{json_name}` must hold strings")))
                .collect(),
            Some(_) => Err(format!("`{json_name}` must be an array of strings")),
        }
    }

    /// An int64 field, a number or a decimal string; `None` when absent (for `optional`).
    pub fn int64_opt(&self, json_name: &str, proto_name: &str) -> Result<Option<i64>, String> {
        let bad = || format!("`{json_name}` must be a 64-bit integer (a number or a decimal string)");
        match self.get(json_name, proto_name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) => Ok(Some(v)),
                // protojson accepts integral floats (`1e3`).
                None => {
                    n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18).map(|f| Some(f as i64)).ok_or_else(bad)
                }
            },
            Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
            Some(_) => Err(bad()),
        }
    }

    /// An int64 field; absent is 0.
    pub fn int64(&self, json_name: &str, proto_name: &str) -> Result<i64, String> {
        Ok(self.int64_opt(json_name, proto_name)?.unwrap_or(0))
    }

    /// A double field, a number or a string (`"NaN"` and infinities refused); absent is 0.
    pub fn double(&self, json_name: &str, proto_name: &str) -> Result<f64, String> {
        let bad = || format!("`{json_name}` must be a finite number");
        let value = match self.get(json_name, proto_name) {
            None => return Ok(0.0),
            Some(Value::Number(n)) => n.as_f64().ok_or_else(bad)?,
            Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| bad())?,
            Some(_) => return Err(bad()),
        };
        if value.is_finite() { Ok(value) } else { Err(bad()) }
    }

    /// An enum field by name (or number); `None` when absent.
    pub fn enumeration(&self, json_name: &str, proto_name: &str, names: &[&str]) -> Result<Option<i32>, String> {
        match self.get(json_name, proto_name) {
            None => Ok(None),
            Some(Value::String(s)) => names
                .iter()
                .position(|n| n == s)
                .map(|i| Some(i as i32))
                .ok_or_else(|| format!("`{json_name}`: unknown value `{s}`; known: {}", names.join(", "))),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .map(Some)
                .ok_or_else(|| format!("`{json_name}` out of range")),
            Some(_) => Err(format!("`{json_name}` must be an enum name")),
        }
    }

    /// A message field; `None` when absent.
    pub fn message(&self, json_name: &str, proto_name: &str) -> Option<&'a Value> {
        self.get(json_name, proto_name)
    }
}

/// An output object, leaving defaults out.
#[derive(Default)]
pub struct Out(Map<String, Value>);

impl Out {
    /// A new, empty object.
    pub fn new() -> Out {
        Out::default()
    }

    /// An int64 as a string, unless 0.
    pub fn int64(mut self, name: &str, value: i64) -> Out {
        if value != 0 {
            self.0.insert(name.into(), Value::String(value.to_string()));
        }
        self
    }

    /// A uint64 as a string, unless 0.
    pub fn uint64(mut self, name: &str, value: u64) -> Out {
        if value != 0 {
            self.0.insert(name.into(), Value::String(value.to_string()));
        }
        self
    }

    /// A double, unless 0.
    pub fn double(mut self, name: &str, value: f64) -> Out {
        if value != 0.0 {
            self.0.insert(name.into(), Value::from(value));
        }
        self
    }

    /// A bool, unless false.
    pub fn bool(mut self, name: &str, value: bool) -> Out {
        if value {
            self.0.insert(name.into(), Value::Bool(true));
        }
        self
    }

    /// A string, unless empty.
    pub fn string(mut self, name: &str, value: &str) -> Out {
        if !value.is_empty() {
            self.0.insert(name.into(), Value::String(value.into()));
        }
        self
    }

    /// A repeated field (strings, messages), unless empty.
    pub fn list(mut self, name: &str, values: Vec<Value>) -> Out {
        if !values.is_empty() {
            self.0.insert(name.into(), Value::Array(values));
        }
        self
    }

    /// A message field, when set.
    pub fn message(mut self, name: &str, value: Option<Value>) -> Out {
        if let Some(value) = value {
            self.0.insert(name.into(), value);
        }
        self
    }

    /// The object.
    pub fn done(self) -> Value {
        Value::Object(self.0)
    }
}

/// Strings as a JSON array.
pub fn strings(values: &[String]) -> Vec<Value> {
    values.iter().map(|s| Value::String(s.clone())).collect()
}

/// int64s as a JSON array of strings.
pub fn int64s(values: &[i64]) -> Vec<Value> {
    values.iter().map(|v| Value::String(v.to_string())).collect()
}
