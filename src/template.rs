//! Prompt templates: `"a photo of a {}"` turns the prompt `cat` into the text the encoder
//! sees. A list of templates is prompt ensembling (their embeddings are averaged).
//! [`Template`] is a template already checked, so a config holding one is valid by type.

/// The placeholder a template must contain exactly once.
pub const PLACEHOLDER: &str = "{}";

/// Checks that a template has exactly one `{}`.
pub fn check_template(template: &str) -> Result<(), String> {
    match template.matches(PLACEHOLDER).count() {
        1 => Ok(()),
        0 => Err(format!(
            "template {template:?} has no {{}} placeholder for the prompt"
        )),
        n => Err(format!(
            "template {template:?} has {n} {{}} placeholders; use exactly one"
        )),
    }
}

/// A template with exactly one `{}`; the config's `classify.default_template` is one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Template(String);

impl TryFrom<String> for Template {
    type Error = String;
    fn try_from(text: String) -> Result<Template, String> {
        check_template(&text)?;
        Ok(Template(text))
    }
}

impl From<Template> for String {
    fn from(t: Template) -> String {
        t.0
    }
}

impl Template {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The text the encoder sees for `prompt` under `template`.
pub fn apply(template: &str, prompt: &str) -> String {
    template.replacen(PLACEHOLDER, prompt, 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_and_check() {
        assert_eq!(apply("a photo of a {}.", "cat"), "a photo of a cat.");
        assert_eq!(apply("{}", "a {} b"), "a {} b");
        assert!(check_template("{}").is_ok());
        assert!(check_template("a photo")
            .unwrap_err()
            .contains("no {} placeholder"));
        assert!(check_template("{} and {}")
            .unwrap_err()
            .contains("2 {} placeholders"));
    }
}
