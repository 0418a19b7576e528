//! The top table: self and total samples per function name.

use std::collections::HashMap;

use crate::tree::FlatTree;

/// One function in the top table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TopRow {
    /// Frame name.
    pub name: String,
    /// Samples in the function itself.
    pub self_value: u64,
    /// Samples in the function and everything it called. A recursive function counts each
    /// sample once, at its outermost frame, so totals never exceed the profile's.
    pub total: u64,
}

/// Every function of `tree`, largest total first (then by self, then name).
pub fn top_table(tree: &FlatTree) -> Vec<TopRow> {
    let n = tree.len();
    if n <= 1 {
        return Vec::new();
    }
    let mut self_by_name = vec![0u64; tree.names.len()];
    let mut total_by_name = vec![0u64; tree.names.len()];
    // A node counts toward its name's total only when no ancestor has the same name.
    let mut open_on_path = vec![0u32; tree.names.len()];
    let mut path: Vec<u32> = Vec::new();
    let depths = tree.depths();
    for i in 1..n {
        let depth = depths[i] as usize;
        while path.len() >= depth {
            let closed = path.pop().expect("non-empty path");
            open_on_path[closed as usize] -= 1;
        }
        let name = tree.name[i];
        self_by_name[name as usize] += tree.self_value[i];
        if open_on_path[name as usize] == 0 {
            total_by_name[name as usize] += tree.total[i];
        }
        open_on_path[name as usize] += 1;
        path.push(name);
    }
    let mut seen: HashMap<u32, ()> = HashMap::new();
    let mut rows: Vec<TopRow> = tree.name[1..]
        .iter()
        .filter(|&&name| seen.insert(name, ()).is_none())
        .map(|&name| TopRow {
            name: tree.names[name as usize].clone(),
            self_value: self_by_name[name as usize],
            total: total_by_name[name as usize],
        })
        .collect();
    rows.sort_by(|a, b| b.total.cmp(&a.total).then(b.self_value.cmp(&a.self_value)).then(a.name.cmp(&b.name)));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::CallTree;

    #[test]
    fn recursion_counts_once_and_self_sums() {
        let mut tree = CallTree::new();
        tree.add_stack(["main", "f", "f", "g"], 2);
        tree.add_stack(["main", "f"], 1);
        tree.add_stack(["main", "g"], 4);
        let rows = top_table(&tree.to_flat());
        let get = |n: &str| rows.iter().find(|r| r.name == n).unwrap().clone();
        assert_eq!(get("main"), TopRow { name: "main".into(), self_value: 0, total: 7 });
        assert_eq!(get("f"), TopRow { name: "f".into(), self_value: 1, total: 3 });
        assert_eq!(get("g"), TopRow { name: "g".into(), self_value: 6, total: 6 });
        assert_eq!(rows[0].name, "main");
    }
}
