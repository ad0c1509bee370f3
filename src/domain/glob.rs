//! Glob patterns over names (namespaces): `*` matches any run of characters, `?` exactly one; everything else
//! matches itself. No character classes and no escapes: Kubernetes names contain neither `*` nor `?`, so there
//! is nothing to escape, and a smaller language is easier to audit in a policy file.

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was and how much of the name it has swallowed so far: on a mismatch, let it swallow
    // one more character and retry. Linear backtracking, so no pattern can make matching exponential.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || (p[pi] != '*' && p[pi] == n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether any of `patterns` matches `name`.
pub fn any_matches<S: AsRef<str>>(patterns: &[S], name: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_star_and_question_mark() {
        assert!(matches("team-a", "team-a"));
        assert!(!matches("team-a", "team-ab"));
        assert!(!matches("team-a", "team-"));
        assert!(matches("team-*", "team-a"));
        assert!(matches("team-*", "team-"));
        assert!(!matches("team-*", "teams"));
        assert!(!matches("team-*", "my-team-a"));
        assert!(matches("*", ""));
        assert!(matches("*", "anything"));
        assert!(matches("*-prod", "payments-prod"));
        assert!(!matches("*-prod", "payments-prod-2"));
        assert!(matches("kube-*", "kube-system"));
        assert!(matches("t?am-*-x", "team-a-b-x"));
        assert!(!matches("t?am", "tam"));
        assert!(matches("a*b*c", "abc"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(!matches("", "a"));
        assert!(matches("", ""));
    }

    #[test]
    fn many_stars_stay_fast() {
        let name = "a".repeat(200);
        let pattern = format!("{}b", "a*".repeat(50));
        assert!(!matches(&pattern, &name));
    }

    #[test]
    fn any_of_a_list() {
        assert!(any_matches(&["kube-*", "default"], "default"));
        assert!(any_matches(&["kube-*", "default"], "kube-public"));
        assert!(!any_matches(&["kube-*", "default"], "defaults"));
        assert!(!any_matches::<&str>(&[], "x"));
    }
}
