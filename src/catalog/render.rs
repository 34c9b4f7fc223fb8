//! The catalog's HTML: plain server-rendered pages, no JavaScript. Every value that came from an
//! object is escaped.

use std::fmt::Write as _;

use super::lineage::access_colour;
use super::view::{Filter, Mesh, ProductPage, Standing};

/// `text` safe inside HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}\
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}\
.ready{background:#c8e6c9}.stalled{background:#ffcdd2}.reconciling{background:#fff9c4}.pending{background:#eee}\
pre{background:#f6f6f6;padding:.5rem;overflow:auto}nav a{margin-right:1rem}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} · data mesh</title>\
         <style>{STYLE}</style></head><body><nav><a href=\"/\">Mesh</a><a href=\"/lineage\">Lineage</a></nav>\
         <h1>{}</h1>{body}</body></html>",
        escape(title),
        escape(title)
    )
}

fn health_cell(standing: &Standing) -> String {
    let word = standing.health.as_str();
    let why = if standing.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", escape(&standing.reason))
    };
    format!(
        "<td class=\"{word}\" title=\"{}\" data-health=\"{word}\">{word}{why}<br><small>{}</small></td>",
        escape(&standing.message),
        escape(&standing.message)
    )
}

fn select(name: &str, options: &[&str], chosen: Option<&str>) -> String {
    let mut html = format!("<select name=\"{name}\"><option value=\"\">any {name}</option>");
    for option in options {
        let selected = if chosen == Some(*option) {
            " selected"
        } else {
            ""
        };
        let _ = write!(html, "<option{selected}>{option}</option>");
    }
    html.push_str("</select>");
    html
}

/// The mesh at a glance, with the search and filter form.
pub fn mesh(mesh: &Mesh, filter: &Filter) -> String {
    let mut body = format!(
        "<form method=\"get\" action=\"/\"><input type=\"search\" name=\"q\" value=\"{}\" placeholder=\"search products\"> {} {} {} <button>Filter</button></form>",
        escape(&filter.text),
        select(
            "health",
            &["ready", "stalled", "reconciling", "pending"],
            filter.health.as_deref()
        ),
        select(
            "classification",
            &["public", "internal", "confidential", "restricted"],
            filter.classification.as_deref()
        ),
        select(
            "lifecycle",
            &["proposed", "draft", "active", "deprecated", "retired"],
            filter.lifecycle.as_deref()
        ),
    );
    if mesh.domains.is_empty() {
        body.push_str("<p>No domains match.</p>");
    }
    for domain in &mesh.domains {
        let _ = write!(
            body,
            "<h2 id=\"domain-{name}\">Domain {name}</h2><p>{}</p><p>Namespace {} · {} topics, {} partitions, {} buckets · <span class=\"{}\">{}</span></p>",
            escape(domain.description.as_deref().unwrap_or("")),
            escape(domain.namespace.as_deref().unwrap_or("-")),
            domain.topics,
            domain.partitions,
            domain.buckets,
            domain.standing.health.as_str(),
            domain.standing.health.as_str(),
            name = escape(&domain.name),
        );
        if !domain.owned.is_empty() {
            let _ = write!(
                body,
                "<details class=\"owned\" data-domain=\"{}\"><summary>What {} owns</summary><table><tr><th>Kind</th><th>Name</th><th>Partitions</th><th>Product</th><th>Port</th><th>Classification</th></tr>",
                escape(&domain.name),
                escape(&domain.name)
            );
            for resource in &domain.owned {
                let _ = write!(
                    body,
                    "<tr class=\"owned-{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    resource.kind,
                    resource.kind,
                    escape(&resource.name),
                    resource
                        .partitions
                        .map_or_else(|| "-".to_owned(), |p| p.to_string()),
                    escape(&resource.product),
                    escape(&resource.port),
                    escape(&resource.classification),
                );
            }
            body.push_str("</table></details>");
        }
        body.push_str("<table><tr><th>Product</th><th>Purpose</th><th>Owner</th><th>Classification</th><th>Lifecycle</th><th>Health</th></tr>");
        for product in &domain.products {
            let _ = write!(
                body,
                "<tr class=\"product\" data-product=\"{ns}/{name}\"><td><a href=\"/products/{ns}/{name}\">{name}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                escape(&product.purpose),
                escape(&product.owner),
                escape(&product.classification),
                escape(&product.lifecycle),
                health_cell(&product.standing),
                ns = escape(&product.namespace),
                name = escape(&product.name),
            );
        }
        body.push_str("</table>");
    }
    page("Data mesh", &body)
}

/// One product's page.
pub fn product(p: &ProductPage) -> String {
    let s = &p.summary;
    let mut body = format!(
        "<p>{}</p><table><tr><th>Domain</th><td>{}</td></tr><tr><th>Owner</th><td>{} {}</td></tr>\
         <tr><th>Classification</th><td>{}</td></tr><tr><th>Lifecycle</th><td>{}</td></tr><tr><th>Health</th>{}</tr>\
         <tr><th>Usage</th><td>{}</td></tr><tr><th>Limitations</th><td>{}</td></tr><tr><th>SLAs</th><td>{}</td></tr></table>",
        escape(&s.purpose),
        escape(&s.domain),
        escape(&s.owner),
        escape(p.owner_email.as_deref().unwrap_or("")),
        escape(&s.classification),
        escape(&s.lifecycle),
        health_cell(&s.standing),
        escape(&p.usage),
        escape(p.limitations.as_deref().unwrap_or("-")),
        escape(&p.sla.join("; ")),
    );
    body.push_str("<h2>Output ports</h2><table><tr><th>Port</th><th>Kind</th><th>Resource</th><th>Endpoint</th><th>Schema</th></tr>");
    for port in &p.output_ports {
        let schema = match (&port.schema_type, &port.schema) {
            (Some(kind), Some(schema)) => format!("{}<pre>{}</pre>", escape(kind), escape(schema)),
            (Some(kind), None) => escape(kind),
            _ => "-".to_owned(),
        };
        let _ = write!(
            body,
            "<tr><td>{}<br><small>{}</small></td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{schema}</td></tr>",
            escape(&port.name),
            escape(port.description.as_deref().unwrap_or("")),
            escape(&port.kind),
            escape(&port.resource),
            escape(port.endpoint.as_deref().unwrap_or("not provisioned yet")),
        );
    }
    body.push_str("</table>");
    // Names are DNS labels (the CRD's schema says so), safe in a path as they are.
    let api = format!("/api/products/{}/{}", escape(&s.namespace), escape(&s.name));
    let _ = write!(
        body,
        "<p>Exports: <a href=\"{api}/odps?format=yaml\">ODPS</a> (the product); ODCS (per port):"
    );
    for port in &p.output_ports {
        let _ = write!(
            body,
            " <a href=\"{api}/odcs/{}?format=yaml\">{}</a>",
            escape(&port.name),
            escape(&port.name)
        );
    }
    body.push_str("</p><h2>Consumers</h2>");
    if p.consumers.is_empty() {
        body.push_str("<p>No AccessPolicy grants this product yet.</p>");
    } else {
        body.push_str("<table><tr><th>Consumer</th><th>Ports</th><th>Access</th><th>Purpose</th><th>Expires</th><th>Policy</th></tr>");
        for c in &p.consumers {
            let ports = if c.ports.is_empty() {
                "all".to_owned()
            } else {
                c.ports.join(", ")
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                escape(&c.consumer),
                escape(&ports),
                escape(&c.access),
                escape(c.purpose.as_deref().unwrap_or("")),
                escape(c.expires_at.as_deref().unwrap_or("never")),
                health_cell(&c.standing),
            );
        }
        body.push_str("</table>");
    }
    body.push_str("<h2>Input ports</h2>");
    if p.input_ports.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str("<table><tr><th>Input</th><th>Reads</th><th>Access</th></tr>");
        for i in &p.input_ports {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td style=\"color:{}\">{} {}</td></tr>",
                escape(&i.name),
                escape(&i.source),
                access_colour(&i.access),
                escape(&i.access),
                escape(i.message.as_deref().unwrap_or("")),
            );
        }
        body.push_str("</table>");
    }
    if let Some(t) = &p.transformation {
        let _ = write!(
            body,
            "<h2>Transformation</h2><p>Spark ({}) <code>{}</code>, {}</p>",
            escape(&t.kind),
            escape(&t.image),
            escape(
                &t.schedule
                    .as_ref()
                    .map_or("run once".to_owned(), |s| format!("on schedule {s}"))
            ),
        );
    }
    body.push_str("<h2>Conditions</h2><table><tr><th>Type</th><th>Status</th><th>Reason</th><th>Message</th></tr>");
    for c in &p.conditions {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&c.type_),
            escape(&c.status),
            escape(&c.reason),
            escape(&c.message)
        );
    }
    body.push_str("</table><h2>Recent Events</h2>");
    if p.events.is_empty() {
        body.push_str("<p>None.</p>");
    } else {
        body.push_str("<table><tr><th>Last seen</th><th>Type</th><th>Reason</th><th>Count</th><th>Message</th></tr>");
        for e in &p.events {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&e.time),
                escape(&e.type_),
                escape(&e.reason),
                e.count,
                escape(&e.note)
            );
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<h2>Lineage</h2><img style=\"max-width:100%\" alt=\"lineage of {name}\" src=\"/products/{ns}/{name}/lineage.svg\">",
        ns = escape(&s.namespace),
        name = escape(&s.name),
    );
    page(&format!("{} / {}", s.domain, s.name), &body)
}

/// The whole mesh's lineage graph, with its legend.
pub fn lineage() -> String {
    let legend = ["Granted", "Pending", "Denied", "NotFound"]
        .iter()
        .map(|a| {
            format!(
                "<span style=\"color:{}\">&#9632; {a}</span>",
                access_colour(a)
            )
        })
        .collect::<Vec<_>>()
        .join(" ");
    page(
        "Lineage",
        &format!(
            "<p>Edges are input ports, from the product read to the product reading: {legend} (not Granted: dashed). Boxes are coloured by health.</p><img style=\"max-width:100%\" alt=\"lineage of the mesh\" src=\"/lineage.svg\">"
        ),
    )
}
