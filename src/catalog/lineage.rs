//! The lineage graph drawn as SVG. The layout (ranks, crossing reduction, placement) is
//! layout-rs's, a Graphviz-style layered layout in Rust; this module only says what to draw:
//! products as boxes coloured by health, input ports as edges coloured by access.

use std::panic::{AssertUnwindSafe, catch_unwind};

use layout::backends::svg::SVGWriter;
use layout::gv::{DotParser, GraphBuilder};

use super::view::{Health, Lineage};

/// The fill of a product's box.
fn health_colour(health: Health) -> &'static str {
    match health {
        Health::Ready => "#c8e6c9",
        Health::Stalled => "#ffcdd2",
        Health::Reconciling => "#fff9c4",
        Health::Pending => "#eeeeee",
    }
}

/// The colour of an input port's edge.
pub fn access_colour(access: &str) -> &'static str {
    match access {
        "Granted" => "#2e7d32",
        "Denied" => "#c62828",
        "NotFound" => "#6d4c41",
        _ => "#f9a825",
    }
}

fn quoted(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The graph in Graphviz's DOT language, as layout-rs reads it.
pub fn dot(lineage: &Lineage) -> String {
    // Left to right: a mesh has many products that read nothing, which would otherwise all
    // share the first row.
    let mut dot = String::from("digraph lineage {\n  rankdir=LR;\n");
    for node in &lineage.nodes {
        dot.push_str(&format!(
            "  {} [shape=box, style=filled, fillcolor={}, label={}];\n",
            quoted(&node.id),
            quoted(health_colour(node.health)),
            quoted(&format!("{} ({})", node.id, node.health.as_str())),
        ));
    }
    for edge in &lineage.edges {
        let style = if edge.access == "Granted" {
            ""
        } else {
            ", style=dashed"
        };
        dot.push_str(&format!(
            "  {} -> {} [color={}, label={}{style}];\n",
            quoted(&edge.from),
            quoted(&edge.to),
            quoted(access_colour(&edge.access)),
            quoted(&format!("{}: {}", edge.port, edge.access)),
        ));
    }
    dot.push_str("}\n");
    dot
}

/// The graph as an SVG document; `None` when the layout fails (a layout-rs panic is caught:
/// a page is not worth a crashed connection task, and the JSON API still answers).
pub fn svg(lineage: &Lineage) -> Option<String> {
    if lineage.nodes.is_empty() {
        return Some(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"40\">\
             <text x=\"10\" y=\"25\">No data products yet.</text></svg>"
                .to_owned(),
        );
    }
    let source = dot(lineage);
    catch_unwind(AssertUnwindSafe(|| {
        let graph = DotParser::new(&source).process().ok()?;
        let mut builder = GraphBuilder::new();
        builder.visit_graph(&graph);
        let mut visual = builder.get();
        let mut writer = SVGWriter::new();
        visual.do_it(false, false, false, &mut writer);
        Some(writer.finalize())
    }))
    .ok()
    .flatten()
}
