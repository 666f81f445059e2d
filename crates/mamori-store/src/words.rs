//! The index's word tokenizer: tantivy's `default` analyser (split on what is not alphanumeric,
//! lower-case) keeping words of up to 255 bytes, in one pass.
//!
//! It yields exactly the tokens, offsets and positions of
//! `SimpleTokenizer` → `RemoveLongFilter::limit(256)` → `LowerCaser` (a test checks it), but
//! scans bytes instead of decoding every character, and lower-cases while copying instead of
//! in a second and third pass. Log text is nearly all ASCII; other text takes the same path
//! as before, character by character. Tokenising was a sixth of the indexing cost.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Words this long or longer are dropped (their position still counts), as by
/// `RemoveLongFilter::limit(256)`.
const WORD_LIMIT: usize = 256;

#[derive(Clone, Default)]
pub(crate) struct WordTokenizer {
    token: Token,
}

pub(crate) struct WordStream<'a> {
    text: &'a str,
    at: usize,
    token: &'a mut Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream<'a> {
        self.token.reset();
        WordStream {
            text,
            at: 0,
            token: &mut self.token,
        }
    }
}

/// Whether the character at byte `i` (a char boundary, not ASCII) is alphanumeric, and its
/// length.
#[cold]
fn wide_char(text: &str, i: usize) -> (bool, usize) {
    match text.get(i..).and_then(|t| t.chars().next()) {
        Some(c) => (c.is_alphanumeric(), c.len_utf8()),
        None => (false, 1),
    }
}

impl TokenStream for WordStream<'_> {
    fn advance(&mut self) -> bool {
        let text = self.text;
        let bytes = text.as_bytes();
        let mut at = self.at;
        loop {
            self.token.text.clear();
            self.token.position = self.token.position.wrapping_add(1);
            // The start of the next word.
            let start = loop {
                let Some(&b) = bytes.get(at) else {
                    self.at = at;
                    return false;
                };
                if b < 0x80 {
                    if b.is_ascii_alphanumeric() {
                        break at;
                    }
                    at += 1;
                } else {
                    let (word, len) = wide_char(text, at);
                    if word {
                        break at;
                    }
                    at += len;
                }
            };
            let mut ascii = true;
            while let Some(&b) = bytes.get(at) {
                if b < 0x80 {
                    if !b.is_ascii_alphanumeric() {
                        break;
                    }
                    at += 1;
                } else {
                    let (word, len) = wide_char(text, at);
                    if !word {
                        break;
                    }
                    ascii = false;
                    at += len;
                }
            }
            if at - start >= WORD_LIMIT {
                continue;
            }
            self.at = at;
            self.token.offset_from = start;
            self.token.offset_to = at;
            let w = &text[start..at];
            if ascii {
                self.token.text.push_str(w);
                self.token.text.make_ascii_lowercase();
            } else {
                for c in w.chars() {
                    self.token.text.extend(c.to_lowercase());
                }
            }
            return true;
        }
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};

    fn tokens(a: &mut TextAnalyzer, text: &str) -> Vec<Token> {
        let mut out = Vec::new();
        a.token_stream(text)
            .process(&mut |t: &Token| out.push(t.clone()));
        out
    }

    #[test]
    fn same_tokens_as_tantivys_chain() {
        let mut ours = TextAnalyzer::from(WordTokenizer::default());
        let mut theirs = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(256))
            .filter(LowerCaser)
            .build();
        let long = "x".repeat(255);
        let too_long = "Y".repeat(256);
        let mut texts = vec![
            String::new(),
            " ".into(),
            "Hello, happy TAX payer!".into(),
            "<86>Nov 23 10:00:05 srv05 sshd[1234]: Accepted publickey for deploy from 10.0.3.4"
                .into(),
            r"C:\Windows\System32\cmd.exe /c whoami".into(),
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855".into(),
            "ログイン失敗 ユーザー=田中 from 東京".into(),
            "ÄÖÜ straße İstanbul ΣΊΣΥΦΟΣ ǅ ﬃ".into(),
            "mixed ascii日本語ascii x١٢٣y ①②".into(),
            format!("a {long} b {too_long} c {too_long}ü d"),
            "\u{0}\u{1}tab\there\r\nnew\u{feff}bom \u{200b}zw".into(),
            "trailing word".into(),
        ];
        // Every prefix of a mixed string, so words end at every kind of boundary.
        let mixed = "aé1 ß-Ω_日x";
        texts.extend(mixed.char_indices().map(|(i, _)| mixed[..i].to_string()));
        for t in &texts {
            let (a, b) = (tokens(&mut ours, t), tokens(&mut theirs, t));
            assert_eq!(a.len(), b.len(), "{t:?}: {a:?} vs {b:?}");
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(
                    (&x.text, x.position, x.offset_from, x.offset_to),
                    (&y.text, y.position, y.offset_from, y.offset_to),
                    "{t:?}"
                );
            }
        }
    }
}
