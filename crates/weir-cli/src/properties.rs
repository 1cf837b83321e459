//! A Java-style `key=value` properties file, as Kafka's server.properties.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The pairs of a properties file, in file order.
pub fn read(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    parse(&text).with_context(|| format!("in config file {}", path.display()))
}

/// Parses `key=value` (or `key: value`) lines; `#` and `!` start comments.
pub fn parse(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(split) = line.find(['=', ':']) else {
            bail!("line {}: {line:?} is not key=value", n + 1);
        };
        let key = line[..split].trim();
        let value = line[split + 1..].trim();
        if key.is_empty() {
            bail!("line {}: empty key", n + 1);
        }
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_skips_comments() {
        let p = parse("# c\n! c\n\nnum.partitions = 3\nlog.durability:none\n").unwrap();
        assert_eq!(
            p,
            vec![
                ("num.partitions".to_string(), "3".to_string()),
                ("log.durability".to_string(), "none".to_string())
            ]
        );
    }

    #[test]
    fn rejects_lines_without_a_separator() {
        let e = parse("a=1\noops\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
