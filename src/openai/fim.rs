//! Fill-in-the-middle prompts that a client already templated, taken apart again.
//!
//! Zed's edit predictions with `"provider": "open_ai_compatible_api"` send no `suffix`:
//! they fill in the FIM template of the configured `prompt_format` and POST it as one
//! `prompt` (zed-industries/zed `crates/edit_prediction/src/fim.rs` `format_fim_prompt`,
//! `open_ai_compatible.rs` `send_custom_server_request`). Continue's autocomplete with `provider: openai` does not send `prompt` + `suffix`: its
//! `OpenAI` class says it has no FIM (`supportsFim()` is false), so it renders the model's
//! FIM template itself and POSTs the result as one `prompt` to `/completions`
//! (continuedev/continue `core/autocomplete/generation/CompletionStreamer.ts`,
//! `core/llm/llms/OpenAI.ts` `_legacystreamComplete`, templates in
//! `core/autocomplete/templating/AutocompleteTemplate.ts`). Taken as text, the whole
//! template would be the code before the cursor; cfgate writes its own completion prompt
//! for a chat model, so it wants the two sides back. The templates known here are
//! Continue's: StarCoder/stable-code (its default for models it does not know, e.g.
//! `workers-ai/@cf/meta/llama-3.3-70b-instruct-fp8-fast`), Qwen coder/CodeGemma,
//! DeepSeek, Code Llama, and the "hole filler" prompt it uses for GPT and Claude names;
//! and Zed's: the same token templates, GLM's, and Codestral's (suffix first).

/// (before the prefix, between prefix and suffix, after the suffix) of the token templates.
const TOKEN_TEMPLATES: &[(&str, &str, &str)] = &[
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    ("<PRE> ", " <SUF>", " <MID>"),
    ("<|code_prefix|>", "<|code_suffix|>", "<|code_middle|>"),
];

/// Codestral's order: `[SUFFIX]{suffix}[PREFIX]{prefix}`, nothing after.
const CODESTRAL: (&str, &str) = ("[SUFFIX]", "[PREFIX]");

/// The hole filler's query: `<QUERY>\n{prefix}{{FILL_HERE}}{suffix}\n</QUERY>\nTASK: ...`,
/// after its worked examples (which hold `{{FILL_HERE}}` too, so the last query counts).
const QUERY_OPEN: &str = "<QUERY>\n";
const QUERY_CLOSE: &str = "\n</QUERY>\nTASK: Fill the {{FILL_HERE}} hole.";
const HOLE: &str = "{{FILL_HERE}}";
const HOLE_FILLER_END: &str = "<COMPLETION>";

/// The (prefix, suffix) of a prompt that is one of the known FIM templates, else `None`
/// (a plain prompt is all prefix).
pub fn split_templated(prompt: &str) -> Option<(String, String)> {
    let trimmed = prompt.trim_end();
    for (pre, suf, end) in TOKEN_TEMPLATES {
        let Some(body) = trimmed.strip_suffix(end) else {
            continue;
        };
        // The last markers: the code's own text comes before them.
        let Some(s) = body.rfind(suf) else { continue };
        let Some(p) = body[..s].rfind(pre) else {
            continue;
        };
        let prefix = format!("{}{}", &body[..p], &body[p + pre.len()..s]);
        return Some((prefix, body[s + suf.len()..].to_string()));
    }
    if let Some(rest) = prompt.strip_prefix(CODESTRAL.0) {
        let p = rest.rfind(CODESTRAL.1)?;
        return Some((
            rest[p + CODESTRAL.1.len()..].to_string(),
            rest[..p].to_string(),
        ));
    }
    if trimmed.ends_with(HOLE_FILLER_END) {
        let close = trimmed.rfind(QUERY_CLOSE)?;
        let open = trimmed[..close].rfind(QUERY_OPEN)? + QUERY_OPEN.len();
        let query = &trimmed[open..close];
        let hole = query.rfind(HOLE)?;
        return Some((
            query[..hole].to_string(),
            query[hole + HOLE.len()..].to_string(),
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &str = "def add(a, b):\n    return ";
    const SUFFIX: &str = "\n\nprint(add(1, 2))\n";

    #[test]
    fn each_of_continues_token_templates_splits_into_its_two_sides() {
        for (pre, suf, end) in TOKEN_TEMPLATES {
            let prompt = format!("{pre}{PREFIX}{suf}{SUFFIX}{end}");
            assert_eq!(
                split_templated(&prompt),
                Some((PREFIX.to_string(), SUFFIX.to_string())),
                "{prompt:?}"
            );
        }
    }

    #[test]
    fn codestrals_suffix_first_template_splits_too() {
        let prompt = format!("[SUFFIX]{SUFFIX}[PREFIX]{PREFIX}");
        assert_eq!(
            split_templated(&prompt),
            Some((PREFIX.to_string(), SUFFIX.to_string()))
        );
    }

    #[test]
    fn the_hole_filler_prompt_splits_at_its_last_query() {
        let prompt = format!(
            "You are a HOLE FILLER.\n\n<QUERY>\nfn x() {{ {HOLE} }}\n</QUERY>\nTASK: Fill the {HOLE} hole.\n\n<COMPLETION>1</COMPLETION>\n\n\
             <QUERY>\n{PREFIX}{HOLE}{SUFFIX}\n</QUERY>\nTASK: Fill the {HOLE} hole. Answer only with the CORRECT completion, and NOTHING ELSE. Do it now.\n<COMPLETION>"
        );
        assert_eq!(
            split_templated(&prompt),
            Some((PREFIX.to_string(), SUFFIX.to_string()))
        );
    }

    #[test]
    fn a_plain_prompt_is_left_alone() {
        assert_eq!(split_templated(PREFIX), None);
        assert_eq!(split_templated("a <fim_middle>"), None);
        assert_eq!(split_templated("<COMPLETION>"), None);
        assert_eq!(split_templated(""), None);
    }

    use proptest::prelude::*;

    proptest! {
        /// Whatever a client sends: no panic, and the two sides come out of the prompt's
        /// own text (nothing made up), for prompts built of the templates' own markers too.
        #[test]
        fn any_prompt_splits_without_panicking(
            parts in proptest::collection::vec(
                prop_oneof![
                    proptest::string::string_regex("[a-z\\n ()]{0,8}").unwrap(),
                    proptest::sample::select(vec![
                        "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<PRE> ", " <SUF>",
                        " <MID>", "[SUFFIX]", "[PREFIX]", "<QUERY>\n", HOLE, QUERY_CLOSE,
                        HOLE_FILLER_END, "<｜fim▁hole｜>", "é",
                    ]).prop_map(str::to_string),
                ],
                0..12,
            )
        ) {
            let prompt = parts.concat();
            if let Some((prefix, suffix)) = split_templated(&prompt) {
                prop_assert!(prefix.len() + suffix.len() <= prompt.len());
            }
        }
    }
}
