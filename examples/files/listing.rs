//! A directory's listing as HTML: the entries a request could be served, names
//! escaped for HTML and percent-encoded in links.
//!
//! Left out: dotfiles (never served), names that are not UTF-8 (no request path can
//! name them), symlinks leading out of the root, and anything but regular files and
//! directories. A huge directory is listed up to [`MAX_ENTRIES`], so a page costs a
//! bounded amount of memory.

use std::fs;
use std::io;
use std::path::Path;

use super::resolve::Root;

/// Most entries shown on one page.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    pub len: u64,
}

/// The servable entries of the directory `dir` (canonical, under `root`), sorted by
/// name, and how many more there were beyond [`MAX_ENTRIES`].
pub fn read(dir: &Path, root: &Root) -> io::Result<(Vec<Entry>, usize)> {
    let mut entries = Vec::new();
    let mut more = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        // Follows a symlink: what matters is what a request would get.
        let Ok(target) = entry.path().canonicalize() else {
            continue;
        };
        if !root.contains(&target) {
            continue;
        }
        let Ok(meta) = fs::metadata(&target) else {
            continue;
        };
        if !meta.is_dir() && !meta.is_file() {
            continue;
        }
        if entries.len() == MAX_ENTRIES {
            more += 1;
            continue;
        }
        entries.push(Entry {
            name,
            is_dir: meta.is_dir(),
            len: meta.len(),
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((entries, more))
}

/// The page for the directory shown as `title` (its decoded request path).
pub fn render(title: &str, entries: &[Entry], more: usize) -> String {
    let title = escape_html(title);
    let mut page = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\
         </head>\n<body><h1>Index of {title}</h1>\n<ul>\n"
    );
    if title != "/" {
        page.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for entry in entries {
        let slash = if entry.is_dir { "/" } else { "" };
        let size = if entry.is_dir {
            String::new()
        } else {
            format!(" ({} bytes)", entry.len)
        };
        page.push_str(&format!(
            "<li><a href=\"./{}{slash}\">{}{slash}</a>{size}</li>\n",
            percent_encode(&entry.name),
            escape_html(&entry.name),
        ));
    }
    page.push_str("</ul>\n");
    if more > 0 {
        page.push_str(&format!("<p>{more} more entries not shown.</p>\n"));
    }
    page.push_str("</body></html>\n");
    page
}

fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

/// Every byte but RFC 3986's unreserved ones escaped: safe in a path segment and in
/// an HTML attribute, and decoded back to the same name by the server.
fn percent_encode(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_in_text_and_links() {
        let entries = [
            Entry {
                name: "<script>alert(1)</script>".into(),
                is_dir: false,
                len: 3,
            },
            Entry {
                name: "a \"b\" & 'c'?#".into(),
                is_dir: true,
                len: 0,
            },
        ];
        let page = render("/x<y>/", &entries, 2);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("Index of /x&lt;y&gt;/"));
        assert!(page.contains(
            "<a href=\"./%3Cscript%3Ealert%281%29%3C%2Fscript%3E\">\
             &lt;script&gt;alert(1)&lt;/script&gt;</a> (3 bytes)"
        ));
        assert!(page.contains(
            "<a href=\"./a%20%22b%22%20%26%20%27c%27%3F%23/\">\
             a &quot;b&quot; &amp; &#39;c&#39;?#/</a>"
        ));
        assert!(page.contains("2 more entries not shown"));
    }

    #[test]
    fn links_decode_back_to_the_name() {
        let name = "naïve file%20(1).txt";
        let link = percent_encode(name);
        let parsed = super::super::resolve::parse(&format!("/{link}")).unwrap();
        assert_eq!(parsed.segments, vec![name.to_string()]);
    }
}
