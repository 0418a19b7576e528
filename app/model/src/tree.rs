//! Call trees: the mutable [`CallTree`] that stacks are merged into, and the immutable
//! [`FlatTree`] that queries return and the viewer draws.

use std::collections::HashMap;

/// The hasher of every map keyed by data from the network (frame names, and the (parent,
/// name) pairs they make): foldhash, as fast as the Fx hash on short names, seeded once per
/// process so that nobody can send names chosen to collide (hash flooding). In the browser
/// (wasm32) the seed comes from addresses only, nearly fixed, which is fine: the file is the
/// user's own.
pub type SeededState = foldhash::fast::RandomState;

/// A `HashMap` with [`SeededState`]: for keys that come from the network.
pub type SeededMap<K, V> = HashMap<K, V, SeededState>;

/// Index of a node in a [`CallTree`] or a [`FlatTree`].
pub type NodeId = u32;

/// The root node ("total") of every tree.
pub const ROOT: NodeId = 0;

/// The name every tree gives its root, as Pyroscope's flamebearer does.
pub const ROOT_NAME: &str = "total";

#[derive(Debug, Clone)]
struct Node {
    name: u32,
    parent: NodeId,
    /// The first child created under this node (`ROOT`, never a child, for none) and its name:
    /// found without the children map, which only holds the other children. Most nodes of a
    /// profile have at most one child (call chains), so most of the map's inserts and lookups,
    /// each a likely cache miss in a large tree, never happen.
    first_child: NodeId,
    first_child_name: u32,
    total: u64,
    self_value: u64,
}

/// A call tree that stacks and other trees are merged into.
///
/// Nodes live in one arena; frame names are interned once. A node's first child is kept in the
/// node, its other children in a map keyed by (parent, name), so that inserting a stack costs
/// at most one hash lookup per frame and no allocation once the frames are known.
#[derive(Debug, Clone)]
pub struct CallTree {
    names: Vec<Box<str>>,
    /// Name ids by the bytes they were read from: every name by its UTF-8, plus invalid UTF-8
    /// seen in input by its raw bytes (an alias of the name with replacement characters).
    name_ids: SeededMap<Box<[u8]>, u32>,
    nodes: Vec<Node>,
    /// Keyed by `parent << 32 | name`: one word, hashed in one step.
    children: SeededMap<u64, NodeId>,
    /// Bytes of every name in `names`: with the node count, what the tree holds in memory.
    name_bytes: usize,
}

impl Node {
    fn new(name: u32, parent: NodeId) -> Self {
        Node { name, parent, first_child: ROOT, first_child_name: 0, total: 0, self_value: 0 }
    }
}

impl Default for CallTree {
    fn default() -> Self {
        Self::new()
    }
}

impl CallTree {
    /// An empty tree: just the root, with a total of zero.
    pub fn new() -> Self {
        let mut tree = CallTree {
            names: Vec::new(),
            name_ids: SeededMap::default(),
            nodes: Vec::new(),
            children: SeededMap::default(),
            name_bytes: 0,
        };
        let root_name = tree.intern(ROOT_NAME);
        tree.nodes.push(Node::new(root_name, ROOT));
        tree
    }

    /// The sum of every sample in the tree.
    pub fn total(&self) -> u64 {
        self.nodes[ROOT as usize].total
    }

    /// Number of nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// True when nothing was ever added.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() == 1 && self.total() == 0
    }

    /// Bytes of all the distinct frame names the tree holds.
    pub fn name_bytes(&self) -> usize {
        self.name_bytes
    }

    /// The name id of `name`, interned if new: what [`CallTree::child_by_name_id`] takes, so
    /// that a decoder which knows its names by index hashes each name once, not once per frame.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.name_ids.get(name.as_bytes()) {
            return id;
        }
        let id = self.names.len() as u32;
        self.name_bytes += name.len();
        self.names.push(name.into());
        self.name_ids.insert(name.as_bytes().into(), id);
        id
    }

    /// The name id of `bytes`, a frame name as read from input: invalid UTF-8 is replaced (and
    /// remembered under its raw bytes), valid UTF-8 is checked only the first time it is seen.
    pub fn intern_bytes(&mut self, bytes: &[u8]) -> u32 {
        if let Some(&id) = self.name_ids.get(bytes) {
            return id;
        }
        match std::str::from_utf8(bytes) {
            Ok(name) => self.intern(name),
            Err(_) => {
                let id = self.intern(&String::from_utf8_lossy(bytes));
                self.name_ids.insert(bytes.into(), id);
                id
            }
        }
    }

    /// The child of `parent` called `name`, created (with zero values) if missing.
    pub fn child(&mut self, parent: NodeId, name: &str) -> NodeId {
        let name = self.intern(name);
        self.child_by_name_id(parent, name)
    }

    /// The first child of `parent` if it is named `bytes` (as valid UTF-8): found by one
    /// comparison, without hashing the name, as most nodes (call chains) have only that child.
    #[inline]
    pub(crate) fn first_child_named(&self, parent: NodeId, bytes: &[u8]) -> Option<NodeId> {
        let p = &self.nodes[parent as usize];
        (p.first_child != ROOT && self.names[p.first_child_name as usize].as_bytes() == bytes).then_some(p.first_child)
    }

    /// The child of `parent` whose name is interned as `name` (by [`CallTree::intern`] or
    /// [`CallTree::intern_bytes`]), created if missing.
    #[inline]
    pub fn child_by_name_id(&mut self, parent: NodeId, name: u32) -> NodeId {
        let next = self.nodes.len() as NodeId;
        let p = &mut self.nodes[parent as usize];
        if p.first_child == ROOT {
            p.first_child = next;
            p.first_child_name = name;
            self.nodes.push(Node::new(name, parent));
            return next;
        }
        if p.first_child_name == name {
            return p.first_child;
        }
        *self.children.entry(u64::from(parent) << 32 | u64::from(name)).or_insert_with(|| {
            self.nodes.push(Node::new(name, parent));
            next
        })
    }

    /// Adds `value` samples to the stack `frames` (root first).
    pub fn add_stack<'a, I>(&mut self, frames: I, value: u64)
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut node = ROOT;
        for frame in frames {
            node = self.child(node, frame);
        }
        self.add_self(node, value);
    }

    /// Adds `value` samples to `node` itself, and to the totals of it and its ancestors.
    pub fn add_self(&mut self, node: NodeId, value: u64) {
        if value == 0 {
            return;
        }
        self.nodes[node as usize].self_value = self.nodes[node as usize].self_value.saturating_add(value);
        let mut cursor = node;
        loop {
            let n = &mut self.nodes[cursor as usize];
            n.total = n.total.saturating_add(value);
            if cursor == ROOT {
                break;
            }
            cursor = n.parent;
        }
    }

    /// Merges every sample of `other` into this tree (by frame name, path by path).
    pub fn merge_flat(&mut self, other: &FlatTree) {
        self.merge_flat_scaled(other, 1, 1);
    }

    /// Merges `other` with every value multiplied by `num / den` (rounded down): used to
    /// average series across uploads without a floating-point detour.
    pub fn merge_flat_scaled(&mut self, other: &FlatTree, num: u64, den: u64) {
        let den = den.max(1);
        let scale = |v: u64| -> u64 { ((v as u128 * num as u128) / den as u128) as u64 };
        let name_map: Vec<u32> = other.names.iter().map(|n| self.intern(n)).collect();
        let mut mapped: Vec<NodeId> = Vec::with_capacity(other.len());
        for i in 0..other.len() {
            let here = if i == 0 {
                ROOT
            } else {
                let parent = mapped[other.parent[i] as usize];
                self.child_by_name_id(parent, name_map[other.name[i] as usize])
            };
            mapped.push(here);
            let n = &mut self.nodes[here as usize];
            n.total = n.total.saturating_add(scale(other.total[i]));
            n.self_value = n.self_value.saturating_add(scale(other.self_value[i]));
        }
    }

    /// Merges every sample of `other` into this tree (by frame name, path by path): what
    /// combines trees merged apart, e.g. on several threads, without freezing them first.
    pub fn merge_tree(&mut self, other: &CallTree) {
        let name_map: Vec<u32> = other.names.iter().map(|n| self.intern(n)).collect();
        let mut mapped: Vec<NodeId> = Vec::with_capacity(other.nodes.len());
        // Nodes are created after their parents, so every parent is mapped before its children.
        for (i, node) in other.nodes.iter().enumerate() {
            let here = if i == 0 {
                ROOT
            } else {
                let parent = mapped[node.parent as usize];
                self.child_by_name_id(parent, name_map[node.name as usize])
            };
            mapped.push(here);
            let n = &mut self.nodes[here as usize];
            n.total = n.total.saturating_add(node.total);
            n.self_value = n.self_value.saturating_add(node.self_value);
        }
    }

    /// Freezes the tree into preorder columns, children sorted by name so that the same
    /// samples always give the same bytes whatever order they arrived in.
    pub fn to_flat(&self) -> FlatTree {
        self.to_flat_mapped().0
    }

    /// [`CallTree::to_flat`], with where each node went: the flat index of every node, or
    /// `u32::MAX` for a node dropped for holding nothing. Time orders
    /// ([`crate::time_order`]) name their stacks by node and follow them through this.
    pub fn to_flat_mapped(&self) -> (FlatTree, Vec<NodeId>) {
        let nodes = &self.nodes;
        let laid = sorted_preorder(
            nodes.len(),
            |node| nodes[node].parent,
            |node| nodes[node].name,
            &self.names,
            |node| (nodes[node].total, nodes[node].self_value),
        );
        (laid.flat, laid.flat_of)
    }
}

/// A tree laid out as [`FlatTree`] wants it, and what the layout found.
struct SortedPreorder {
    flat: FlatTree,
    /// The flat index of every input node, `u32::MAX` for one dropped for holding nothing.
    flat_of: Vec<NodeId>,
    /// Whether two siblings had the same name (a tree built by name never has them).
    same_named_siblings: bool,
}

/// Lays out the tree of `count` nodes (node 0 the root, `parent(n)` before `n`) in preorder
/// with siblings sorted by name, without nodes whose total is 0, the names kept only if used
/// and numbered by first use: one layout for every tree, so that the same samples always give
/// the same bytes whatever order they arrived in.
fn sorted_preorder<S: AsRef<str>>(
    count: usize,
    parent: impl Fn(usize) -> NodeId,
    name: impl Fn(usize) -> u32,
    names: &[S],
    values: impl Fn(usize) -> (u64, u64),
) -> SortedPreorder {
    let name_of = |node: NodeId| names[name(node as usize) as usize].as_ref();
    let (first_kid, mut kids) = children_column(count, &parent);
    let children = |node: NodeId| first_kid[node as usize] as usize..first_kid[node as usize + 1] as usize;
    let mut same_named_siblings = false;
    for node in 0..count {
        let list = &mut kids[children(node as NodeId)];
        if list.len() > 1 {
            list.sort_unstable_by(|a, b| name_of(*a).cmp(name_of(*b)));
            same_named_siblings |= list.windows(2).any(|w| name_of(w[0]) == name_of(w[1]));
        }
    }
    let mut name_remap: Vec<u32> = vec![u32::MAX; names.len()];
    let mut flat = FlatTree::default();
    let mut flat_of: Vec<NodeId> = vec![u32::MAX; count];
    let mut stack: Vec<(NodeId, NodeId)> = vec![(ROOT, ROOT)];
    while let Some((node, flat_parent)) = stack.pop() {
        let (total, self_value) = values(node as usize);
        if node != ROOT && total == 0 {
            continue;
        }
        let remapped = &mut name_remap[name(node as usize) as usize];
        if *remapped == u32::MAX {
            *remapped = flat.names.len() as u32;
            flat.names.push(name_of(node).to_string());
        }
        let flat_index = flat.len() as NodeId;
        flat_of[node as usize] = flat_index;
        flat.name.push(*remapped);
        flat.parent.push(flat_parent);
        flat.total.push(total);
        flat.self_value.push(self_value);
        for &child in kids[children(node)].iter().rev() {
            stack.push((child, flat_index));
        }
    }
    SortedPreorder { flat, flat_of, same_named_siblings }
}

/// The children of every node of a tree of `count` nodes (node 0 the root, `parent_of(n)` for
/// the others) in one column, grouped by parent, in node order within a group: node `n`'s are
/// `kids[first[n]..first[n + 1]]`. A counting sort, so one allocation instead of one per node,
/// which dominated converting small trees.
pub fn children_column(count: usize, parent_of: impl Fn(usize) -> NodeId) -> (Vec<u32>, Vec<NodeId>) {
    let mut first = vec![0u32; count + 1];
    for node in 1..count {
        first[parent_of(node) as usize + 1] += 1;
    }
    for i in 0..count {
        first[i + 1] += first[i];
    }
    let mut next_slot = first.clone();
    let mut kids: Vec<NodeId> = vec![ROOT; count.saturating_sub(1)];
    for node in 1..count {
        let slot = &mut next_slot[parent_of(node) as usize];
        kids[*slot as usize] = node as NodeId;
        *slot += 1;
    }
    (first, kids)
}

/// An immutable call tree in preorder columns: node 0 is the root, every node comes after its
/// parent and before its next sibling, siblings in name order.
///
/// This is the shape queries return, the binary codec carries and the viewer lays out:
/// columns instead of node structs so that a million-node tree is four flat arrays.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FlatTree {
    /// Frame names, indexed by [`FlatTree::name`].
    pub names: Vec<String>,
    /// Name index of each node.
    pub name: Vec<u32>,
    /// Parent of each node (the root is its own parent).
    pub parent: Vec<NodeId>,
    /// Samples in each node and its descendants.
    pub total: Vec<u64>,
    /// Samples in each node itself.
    pub self_value: Vec<u64>,
}

impl FlatTree {
    /// Number of nodes, the root included (0 only for a tree that was never built).
    pub fn len(&self) -> usize {
        self.name.len()
    }

    /// True for a tree with no nodes at all.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty()
    }

    /// This tree as [`CallTree::to_flat`] lays out the same samples (siblings in name order, the
    /// root named [`ROOT_NAME`], names kept if used and numbered by first use), without building
    /// a `CallTree`, whose children map costs a hash probe per node. `None` when the tree has
    /// what a `CallTree` would join (two siblings or two names with the same text), so that the
    /// caller merges it instead. Expects a tree whose parents come before their children.
    pub fn canonical(&self) -> Option<FlatTree> {
        let n = self.len();
        if n == 0 || self.parent.len() != n || self.total.len() != n || self.self_value.len() != n {
            return None;
        }
        // The root's name goes last, as an id of its own.
        let mut names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let root_name = names.len() as u32;
        names.push(ROOT_NAME);
        let name = |node: usize| if node == 0 { root_name } else { self.name[node] };
        if (1..n).any(|node| self.parent[node] as usize >= node || self.name[node] >= root_name) {
            return None;
        }
        let laid = sorted_preorder(
            n,
            |node| self.parent[node],
            name,
            &names,
            |node| (self.total[node], self.self_value[node]),
        );
        let mut seen = std::collections::HashSet::with_capacity(laid.flat.names.len());
        let distinct_names = laid.flat.names.iter().all(|name| seen.insert(name.as_str()));
        (!laid.same_named_siblings && distinct_names).then_some(laid.flat)
    }

    /// Total samples (the root's total).
    pub fn total(&self) -> u64 {
        self.total.first().copied().unwrap_or(0)
    }

    /// The frame name of `node`.
    pub fn name_of(&self, node: NodeId) -> &str {
        &self.names[self.name[node as usize] as usize]
    }

    /// The path from the root's first child down to `node`, as node ids.
    pub fn path_to(&self, node: NodeId) -> Vec<NodeId> {
        let mut path = Vec::new();
        let mut cursor = node;
        while cursor != ROOT {
            path.push(cursor);
            cursor = self.parent[cursor as usize];
        }
        path.reverse();
        path
    }

    /// Every stack that has self samples, root first, with its self value: the folded view.
    pub fn stacks(&self) -> Vec<(Vec<&str>, u64)> {
        let mut out = Vec::new();
        let mut path: Vec<&str> = Vec::new();
        let depth = self.depths();
        for i in 1..self.len() {
            path.truncate(depth[i] as usize - 1);
            path.push(self.name_of(i as NodeId));
            if self.self_value[i] > 0 {
                out.push((path.clone(), self.self_value[i]));
            }
        }
        out
    }

    /// Depth of every node (the root is 0).
    pub fn depths(&self) -> Vec<u32> {
        let mut depth = vec![0u32; self.len()];
        for i in 1..self.len() {
            depth[i] = depth[self.parent[i] as usize] + 1;
        }
        depth
    }

    /// Checks the invariants the rest of the model relies on; returns what is broken.
    pub fn validate(&self) -> Result<(), String> {
        let n = self.len();
        if self.parent.len() != n || self.total.len() != n || self.self_value.len() != n {
            return Err("columns differ in length".into());
        }
        if n == 0 {
            return Ok(());
        }
        if self.parent[0] != ROOT {
            return Err("root must be its own parent".into());
        }
        // Zipped columns, so the loops carry one bounds check (the parent's) instead of five:
        // the browser checks every tree it is sent before its first paint.
        let mut child_sum = vec![0u64; n];
        for (i, (&parent, &total)) in self.parent.iter().zip(&self.total).enumerate().skip(1) {
            let p = parent as usize;
            if p >= i {
                return Err(format!("node {i} comes before its parent {p}"));
            }
            child_sum[p] = child_sum[p].saturating_add(total);
        }
        let names = self.names.len();
        let columns = self.name.iter().zip(&child_sum).zip(&self.self_value).zip(&self.total);
        for (i, (((&name, &children), &self_value), &total)) in columns.enumerate() {
            if name as usize >= names {
                return Err(format!("node {i} has no name"));
            }
            if children.saturating_add(self_value) != total {
                return Err(format!("node {i}: total is not self plus children"));
            }
        }
        Ok(())
    }

    /// The part of this tree that a flame graph up to `width_px` pixels wide draws at the root's
    /// zoom: [`visible_frames`](crate::layout::visible_frames) descends only into frames at
    /// least a pixel wide, so the children of narrower frames never show, and a million-node
    /// tree's first picture needs a few thousand nodes. The picture is the same as the whole
    /// tree's, frame for frame, at the root's zoom and package colours, for any width up to
    /// `width_px` (property-tested); the rows are too, as the deepest node is kept with its
    /// ancestors. A frame whose children are left out counts their samples as its own, so the
    /// part is a valid tree with the same totals. Zooming in or searching needs the whole tree.
    pub fn visible_part(&self, width_px: u64) -> FlatTree {
        let n = self.len();
        let root_total = u128::from(self.total());
        if n == 0 || root_total == 0 {
            return self.clone();
        }
        // Children of a frame at least half a pixel wide at `width_px` are kept: the layout's
        // floating-point widths may put a frame of exactly one pixel either side of it.
        let descends = |node: usize| u128::from(self.total[node]) * u128::from(width_px) * 2 >= root_total;
        let mut keep = vec![false; n];
        keep[0] = true;
        for node in 1..n {
            let parent = self.parent[node] as usize;
            keep[node] = keep[parent] && descends(parent);
        }
        let depths = self.depths();
        let deepest = (0..n).max_by_key(|&node| (depths[node], std::cmp::Reverse(node))).unwrap_or(0);
        let mut cursor = deepest;
        while !keep[cursor] {
            keep[cursor] = true;
            cursor = self.parent[cursor] as usize;
        }
        let mut new_id = vec![u32::MAX; n];
        let mut name_id = vec![u32::MAX; self.names.len()];
        let mut part = FlatTree::default();
        for node in (0..n).filter(|&node| keep[node]) {
            new_id[node] = part.len() as NodeId;
            let name = self.name[node] as usize;
            if name_id[name] == u32::MAX {
                name_id[name] = part.names.len() as u32;
                part.names.push(self.names[name].clone());
            }
            part.name.push(name_id[name]);
            part.parent.push(new_id[self.parent[node] as usize]);
            part.total.push(self.total[node]);
            part.self_value.push(self.total[node]);
        }
        for node in (1..part.len()).rev() {
            let parent = part.parent[node] as usize;
            part.self_value[parent] = part.self_value[parent].saturating_sub(part.total[node]);
        }
        part
    }

    /// Builds the tree back into a mutable [`CallTree`].
    pub fn to_call_tree(&self) -> CallTree {
        let mut tree = CallTree::new();
        tree.merge_flat(self);
        tree
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tree_of(stacks: &[(Vec<String>, u64)]) -> FlatTree {
        let mut tree = CallTree::new();
        for (frames, value) in stacks {
            tree.add_stack(frames.iter().map(String::as_str), *value);
        }
        tree.to_flat()
    }

    #[test]
    fn totals_add_up_and_children_are_sorted() {
        let mut tree = CallTree::new();
        tree.add_stack(["a", "c"], 2);
        tree.add_stack(["a", "b"], 1);
        tree.add_stack(["a"], 4);
        let flat = tree.to_flat();
        assert_eq!(flat.total(), 7);
        let names: Vec<&str> = (0..flat.len()).map(|i| flat.name_of(i as NodeId)).collect();
        assert_eq!(names, ["total", "a", "b", "c"]);
        assert_eq!(flat.total, [7, 7, 1, 2]);
        assert_eq!(flat.self_value, [0, 4, 1, 2]);
        flat.validate().unwrap();
    }

    #[test]
    fn recursion_keeps_separate_nodes() {
        let flat = tree_of(&[(vec!["f".into(), "f".into(), "f".into()], 3)]);
        assert_eq!(flat.len(), 4);
        assert_eq!(flat.path_to(3).len(), 3);
    }

    /// `stacks` as a flat tree in the order nodes first appear (parents first, siblings as they
    /// came, as a stored chunk numbers them), with zero-total nodes left in. With `alias`, the
    /// frame `a` is written through a second name entry of the same text wherever its parent
    /// is `main`, as a merge would see two names that are one.
    fn in_arrival_order(stacks: &[(Vec<String>, u64)], alias: bool) -> FlatTree {
        let mut tree = FlatTree { names: vec!["root".into()], name: vec![0], parent: vec![0], ..FlatTree::default() };
        let mut ids: HashMap<String, u32> = HashMap::new();
        let mut nodes: HashMap<(NodeId, u32), NodeId> = HashMap::new();
        let mut self_value = vec![0u64];
        for (frames, value) in stacks {
            let mut node = ROOT;
            for frame in frames {
                let parent_is_main = node != ROOT && tree.names[tree.name[node as usize] as usize] == "main";
                let key = if alias && parent_is_main && frame == "a" { "a (alias)" } else { frame.as_str() };
                let name = *ids.entry(key.to_string()).or_insert_with(|| {
                    tree.names.push(frame.clone());
                    tree.names.len() as u32 - 1
                });
                node = *nodes.entry((node, name)).or_insert_with(|| {
                    tree.name.push(name);
                    tree.parent.push(node);
                    self_value.push(0);
                    tree.name.len() as NodeId - 1
                });
            }
            self_value[node as usize] += value;
        }
        // A node that holds nothing, as a chunk keeps for uploads outside the query.
        tree.names.push("unused".into());
        tree.name.push(tree.names.len() as u32 - 1);
        tree.parent.push(ROOT);
        self_value.push(0);
        let mut total = self_value.clone();
        for i in (1..tree.len()).rev() {
            total[tree.parent[i] as usize] += total[i];
        }
        FlatTree { total, self_value, ..tree }
    }

    proptest! {
        #[test]
        fn canonical_lays_out_what_a_merge_would(stacks in stacks_strategy(), alias: bool) {
            let arrived = in_arrival_order(&stacks, alias);
            let mut merged = CallTree::new();
            merged.merge_flat(&arrived);
            let merged = merged.to_flat();
            match arrived.canonical() {
                Some(canonical) => prop_assert_eq!(&canonical, &merged),
                // Only a tree with two names of one text is left to the merge.
                None => prop_assert!(alias),
            }
            if !alias {
                prop_assert_eq!(merged, tree_of(&stacks));
            }
        }
    }

    #[test]
    fn canonical_refuses_what_a_merge_would_join() {
        // Two siblings named `a` through two name entries.
        let twins = FlatTree {
            names: vec!["root".into(), "a".into(), "a".into()],
            name: vec![0, 1, 2],
            parent: vec![0, 0, 0],
            total: vec![3, 1, 2],
            self_value: vec![0, 1, 2],
        };
        assert_eq!(twins.canonical(), None);
        let broken = FlatTree { parent: vec![0, 2, 0], ..twins.clone() };
        assert_eq!(broken.canonical(), None);
        assert_eq!(FlatTree::default().canonical(), None);
    }

    fn stacks_strategy() -> impl Strategy<Value = Vec<(Vec<String>, u64)>> {
        let frame = prop::sample::select(vec!["main", "a", "b", "c", "ünï", "<x>"]).prop_map(String::from);
        prop::collection::vec((prop::collection::vec(frame, 1..8), 1u64..1000), 0..40)
    }

    proptest! {
        #[test]
        fn merge_is_order_independent(stacks in stacks_strategy(), split in 0usize..40) {
            let whole = tree_of(&stacks);
            let split = split.min(stacks.len());
            let (left, right) = stacks.split_at(split);
            let mut merged = CallTree::new();
            merged.merge_flat(&tree_of(right));
            merged.merge_flat(&tree_of(left));
            prop_assert_eq!(merged.to_flat(), whole.clone());
            let mut reversed = stacks.clone();
            reversed.reverse();
            prop_assert_eq!(tree_of(&reversed), whole);
        }

        #[test]
        fn merging_call_trees_equals_merging_their_stacks(stacks in stacks_strategy(), split in 0usize..40) {
            let split = split.min(stacks.len());
            let (left, right) = stacks.split_at(split);
            let build = |part: &[(Vec<String>, u64)]| {
                let mut tree = CallTree::new();
                for (frames, value) in part {
                    tree.add_stack(frames.iter().map(String::as_str), *value);
                }
                tree
            };
            let mut merged = build(right);
            merged.merge_tree(&build(left));
            prop_assert_eq!(merged.to_flat(), tree_of(&stacks));
        }

        #[test]
        fn the_visible_part_draws_what_the_whole_tree_draws(
            stacks in stacks_strategy(),
            part_width in 1u64..200,
            narrower_by in 0u64..200,
        ) {
            use crate::layout::{Geometry, visible_frames};
            let whole = tree_of(&stacks);
            let part = whole.visible_part(part_width);
            prop_assert_eq!(part.validate(), Ok(()));
            prop_assert_eq!(part.total(), whole.total());
            prop_assert!(part.len() <= whole.len());
            let picture = |tree: &FlatTree, width: f64| {
                let geometry = Geometry::new(tree);
                let frames = visible_frames(tree, &geometry, ROOT, width)
                    .into_iter()
                    .map(|r| (r.node.map(|n| tree.name_of(n).to_owned()), r.x, r.width, r.depth))
                    .collect::<Vec<_>>();
                (frames, geometry.max_depth)
            };
            let width = part_width.saturating_sub(narrower_by).max(1) as f64;
            prop_assert_eq!(picture(&part, width), picture(&whole, width));
        }

        #[test]
        fn flat_trees_are_valid_and_conserve_totals(stacks in stacks_strategy()) {
            let flat = tree_of(&stacks);
            prop_assert!(flat.validate().is_ok());
            let expected: u64 = stacks.iter().map(|(_, v)| v).sum();
            prop_assert_eq!(flat.total(), expected);
            let from_stacks: u64 = flat.stacks().iter().map(|(_, v)| v).sum();
            prop_assert_eq!(from_stacks, expected);
        }
    }
}
