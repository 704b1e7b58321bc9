//! Errors as the one line a user reads: an error and its causes, each said once.

/// An error and its causes as one line, like `{:#}`, but without a cause whose text the
/// line already holds: delta-rs and object_store put their source inside their own
/// message, so `{:#}` of a failed Delta write repeated one OS error five times. Every error the
/// binary prints, and every sink failure that stops a run, goes through it.
pub fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(text.as_str()) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::one_line;

    /// An error that, like delta-rs's, writes its source into its own message.
    #[derive(Debug)]
    struct Wraps(std::io::Error);

    impl std::fmt::Display for Wraps {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Unable to copy data to file: {}", self.0)
        }
    }

    impl std::error::Error for Wraps {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_the_line_is_said_once() {
        let full = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left");
        let error = anyhow::Error::new(Wraps(full)).context("writing part-1.parquet");
        assert_eq!(
            one_line(&error),
            "writing part-1.parquet: Unable to copy data to file: No space left"
        );
        // Causes that do not repeat are all kept, in order, as `{:#}` has them.
        let plain = anyhow::anyhow!("no space")
            .context("writing")
            .context("committing");
        assert_eq!(one_line(&plain), format!("{plain:#}"));
    }
}
