//! Tests of the policy engine: each condition, first-match order, validation messages, and
//! the indexed path against the plain one.

use std::time::Duration;

use super::*;

fn set(yaml: &str) -> PolicySet {
    PolicySet::load(&[Source { path: "p.yaml".into(), text: yaml.into() }])
        .unwrap_or_else(|ps| panic!("{}", format_problems(&ps)))
}

fn problems(yaml: &str) -> Vec<Problem> {
    PolicySet::load(&[Source { path: "p.yaml".into(), text: yaml.into() }]).unwrap_err()
}

fn knock<'a>(user: &'a str, reason: Option<&'a str>) -> Knock<'a> {
    Knock { user, room: "!r:x", reason, ..Default::default() }
}

impl<'a> Knock<'a> {
    fn with_lists_for_tests(self, lists: &'a dyn ListSource) -> Self {
        Knock { lists: Some(lists), ..self }
    }
}

/// Decides with both paths and checks they agree.
fn decide(set: &PolicySet, k: &Knock) -> Decision {
    let p = set.policy_for("!r:x", &[]).expect("governed");
    let fast = p.decide(k);
    assert_eq!(fast, p.decide_plainly(k), "indexed and plain decisions differ");
    fast
}

fn rule_of(set: &PolicySet, k: &Knock) -> Option<String> {
    decide(set, k).rule
}

const ISSUE_EXAMPLE: &str = r##"
name: support
rooms: ["!r:x", "#support:example.org"]
default: review
rules:
  - name: blocked-servers
    when:
      server: ["spam.example", "*.evil.example"]
    action: ban
    reason: "Knocks from {server} are not accepted here."
  - name: our-users
    when:
      user: "@*:example.org"
    action: accept
  - name: needs-a-reason
    when:
      reason: { missing: true }
    action: deny
    reason: "Please tell us why you would like to join."
  - name: spam-words
    when:
      reason: { matches: "(?i)\\b(airdrop|giveaway|crypto)\\b" }
    action: ban
"##;

#[test]
fn the_issue_example_decides_as_documented() {
    let s = set(ISSUE_EXAMPLE);
    let d = decide(&s, &knock("@bob:spam.example", Some("hi")));
    assert_eq!((d.rule.as_deref(), d.action), (Some("blocked-servers"), Action::Ban));
    assert_eq!(d.reason.as_deref(), Some("Knocks from spam.example are not accepted here."));
    assert!(d.explanation.contains("spam.example"), "{}", d.explanation);
    assert_eq!(rule_of(&s, &knock("@x:a.evil.example", Some("hi"))).as_deref(), Some("blocked-servers"));
    assert_eq!(rule_of(&s, &knock("@x:evil.example", Some("hi"))), None, "*.evil.example needs a subdomain");
    assert_eq!(rule_of(&s, &knock("@alice:example.org", None)).as_deref(), Some("our-users"));
    let d = decide(&s, &knock("@carol:other.org", None));
    assert_eq!((d.rule.as_deref(), d.action), (Some("needs-a-reason"), Action::Deny));
    assert_eq!(rule_of(&s, &knock("@carol:other.org", Some("   "))).as_deref(), Some("needs-a-reason"));
    assert_eq!(rule_of(&s, &knock("@d:other.org", Some("FREE Crypto here"))).as_deref(), Some("spam-words"));
    assert_eq!(rule_of(&s, &knock("@d:other.org", Some("cryptography fan"))), None);
    let d = decide(&s, &knock("@e:other.org", Some("I need help with my account")));
    assert_eq!((d.rule, d.action), (None, Action::Review));
    assert!(d.explanation.contains("no rule matched"));
    assert_eq!(s.policy_for("!other:x", &["#support:example.org".into()]).unwrap().name, "support");
    assert!(s.policy_for("!other:x", &[]).is_none());
}

#[test]
fn first_match_wins_in_file_order() {
    let s = set(r##"
rooms: "!r:x"
rules:
  - name: first
    when: { server: "*.org" }
    action: deny
  - name: second
    when: { server: "example.org" }
    action: accept
  - name: third
    action: ban
"##);
    assert_eq!(rule_of(&s, &knock("@a:example.org", None)).as_deref(), Some("first"));
    assert_eq!(rule_of(&s, &knock("@a:example.com", None)).as_deref(), Some("third"));
    assert_eq!(s.policies()[0].name, "p", "the name defaults to the file stem");
}

#[test]
fn each_condition() {
    let s = set(r##"
rooms: "*"
default: ignore
rules:
  - { name: user-glob, when: { user: ["@spam*:*", "@bot:x"] }, action: ban }
  - { name: user-regex, when: { user_regex: "^@[0-9]+:" }, action: ban }
  - { name: server-port, when: { server: "localhost:*" }, action: accept }
  - { name: short, when: { reason: { min_length: 1, max_length: 3 } }, action: deny }
  - { name: long, when: { reason: { min_length: 500 } }, action: review }
  - { name: words, when: { reason: { contains: ["free money", "Casino"] } }, action: ban }
  - { name: no-name, when: { displayname: { missing: true } }, action: deny }
  - { name: name-re, when: { displayname: { matches: "(?i)admin" } }, action: ban }
  - { name: member, when: { member_of: ["#friends:x", "!club:x"] }, action: accept }
  - { name: wave, when: { room_knocks: { more_than: 5, within: 10m } }, action: review }
  - { name: repeat, when: { user_knocks: { more_than: 2, within: 1d } }, action: ban }
"##);
    let r = |k: &Knock| rule_of(&s, k);
    let base = |user| Knock { user, displayname: Some("Someone"), reason: Some("hello there"), ..Default::default() };
    assert_eq!(r(&base("@spammer:y")).as_deref(), Some("user-glob"));
    assert_eq!(r(&base("@BOT:X")).as_deref(), Some("user-glob"), "globs are case-insensitive");
    assert_eq!(r(&base("@123:y")).as_deref(), Some("user-regex"));
    assert_eq!(r(&base("@bob:localhost:8448")).as_deref(), Some("server-port"));
    assert_eq!(r(&Knock { reason: Some("hi"), ..base("@a:y") }).as_deref(), Some("short"));
    let long = "x".repeat(600);
    assert_eq!(r(&Knock { reason: Some(&long), ..base("@a:y") }).as_deref(), Some("long"));
    assert_eq!(r(&Knock { reason: Some("get FREE money now"), ..base("@a:y") }).as_deref(), Some("words"));
    assert_eq!(r(&Knock { reason: Some("free time, money later"), ..base("@a:y") }), None);
    assert_eq!(r(&Knock { reason: Some("casino!"), ..base("@a:y") }).as_deref(), Some("words"));
    assert_eq!(r(&Knock { displayname: None, ..base("@a:y") }).as_deref(), Some("no-name"));
    assert_eq!(r(&Knock { displayname: Some("Server Admin"), ..base("@a:y") }).as_deref(), Some("name-re"));
    let rooms = vec!["#friends:x".to_owned()];
    assert_eq!(r(&Knock { member_of: &rooms, ..base("@a:y") }).as_deref(), Some("member"));
    let ten_min = Duration::from_secs(600);
    let wave = [(ten_min, 6)];
    assert_eq!(r(&Knock { room_knocks: &wave, ..base("@a:y") }).as_deref(), Some("wave"));
    let calm = [(ten_min, 5)];
    assert_eq!(r(&Knock { room_knocks: &calm, ..base("@a:y") }), None);
    let again = [(Duration::from_secs(86_400), 3)];
    assert_eq!(r(&Knock { user_knocks: &again, ..base("@a:y") }).as_deref(), Some("repeat"));
    assert_eq!(s.windows(), vec![ten_min, Duration::from_secs(86_400)]);
}

#[test]
fn any_all_not_compose() {
    let s = set(r##"
rooms: "!r:x"
rules:
  - name: trusted-or-explained
    when:
      any:
        - server: "example.org"
        - all:
            - reason: { min_length: 20 }
            - not: { reason: { contains: [spam] } }
    action: accept
"##);
    assert_eq!(rule_of(&s, &knock("@a:example.org", None)).as_deref(), Some("trusted-or-explained"));
    assert_eq!(
        rule_of(&s, &knock("@a:b.org", Some("I would like to join the support room"))).as_deref(),
        Some("trusted-or-explained")
    );
    assert_eq!(rule_of(&s, &knock("@a:b.org", Some("I would like to join, this is not spam"))), None);
    let t = s.policies()[0].explain(&knock("@a:b.org", Some("short")));
    assert_eq!(t.rules.len(), 1);
    assert!(!t.rules[0].matched);
    assert!(t.rules[0].detail.contains("none of"), "{}", t.rules[0].detail);
}

#[test]
fn explain_says_which_condition_failed_for_each_rule() {
    let s = set(ISSUE_EXAMPLE);
    let t = s.policies()[0].explain(&knock("@x:other.org", Some("free airdrop")));
    let names: Vec<_> = t.rules.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(names, ["blocked-servers", "our-users", "needs-a-reason", "spam-words"]);
    assert!(t.rules[0].detail.contains("server \"other.org\" does not match"), "{}", t.rules[0].detail);
    assert!(t.rules[1].detail.contains("does not match [\"@*:example.org\"]"), "{}", t.rules[1].detail);
    assert!(t.rules[2].detail.contains("reason is not missing"), "{}", t.rules[2].detail);
    assert!(t.rules[3].matched);
    assert_eq!(t.decision.rule.as_deref(), Some("spam-words"));
}

/// Problems of a file, as `line: message` strings.
fn messages(yaml: &str) -> Vec<String> {
    problems(yaml).iter().map(|p| format!("{}: {}", p.at.line, p.message)).collect()
}

#[test]
fn every_problem_of_a_file_is_reported_with_its_line() {
    let ms = messages(
        r##"name: broken
rooms: ["!r:x", "general"]
defualt: review
rules:
  - name: a
    when:
      servr: "x.org"
    action: acept
  - name: a
    when:
      user_regex: "([unclosed"
      reason: { matches: "ok", contains: [] }
      room_knocks: { more_than: 3, within: "10 minutes" }
    action: deny
    reason: "Bye {usr}"
  - action: ban
"##,
    );
    let expect = [
        "2: `general` is not a room",
        "3: unknown key `defualt` in a policy; did you mean `default`?",
        "7: unknown key `servr` in `when`; did you mean `server`?",
        "8: unknown action `acept` (use one of accept, deny, ban, review, ignore); did you mean `accept`?",
        "9: duplicate rule name `a` (first used on line 5)",
        "11: `user_regex`: invalid regex:",
        "12: `reason.contains` must not be an empty list",
        "13: `room_knocks`.within: `10 minutes` is not a duration",
        "15: `reason`: unknown placeholder `{usr}`",
        "16: rule 3 has no `name`",
    ];
    for e in expect {
        assert!(ms.iter().any(|m| m.starts_with(e)), "missing {e:?} in:\n{}", ms.join("\n"));
    }
    assert_eq!(ms.len(), expect.len(), "{}", ms.join("\n"));
}

#[test]
fn a_regex_the_check_accepts_is_one_the_service_builds() {
    // `\w{2,6}` used to pass the check (its NFA alone fit) while its regex did not build:
    // the first knock that reached the rule panicked the worker.
    let yaml = "rooms: \"!r:x\"\nrules:\n  - name: w\n    when: { reason: { matches: '\\w{2,6}' } }\n    action: accept\n  - name: d\n    when: { reason: { matches: '^[0-9]+$' } }\n    action: ban\n";
    let s = set(yaml);
    assert_eq!(rule_of(&s, &knock("@a:x", Some("hello there"))).as_deref(), Some("w"));
    let explained = s.policies()[0].explain(&knock("@a:x", Some("hello there")));
    assert_eq!(explained.decision.rule.as_deref(), Some("w"));
    // Over the limit is refused, with the size.
    let ms =
        messages("rooms: \"*\"\nrules:\n  - name: r\n    when: { reason: { matches: '\\w{50}' } }\n    action: deny\n");
    assert_eq!(ms.len(), 1, "{ms:?}");
    assert!(ms[0].starts_with("4: "), "{ms:?}");
    assert!(ms[0].contains("1024 KiB"), "{ms:?}");
}

#[test]
fn regex_errors_carry_the_engine_message_and_the_size_limit_holds() {
    let ms = messages("rooms: \"*\"\nrules:\n  - name: r\n    when: { user_regex: \"a{99999}\" }\n    action: deny\n");
    assert_eq!(ms.len(), 1);
    assert!(ms[0].starts_with("4: `user_regex`: invalid regex:"), "{ms:?}");
    assert!(ms[0].contains("size limit"), "{ms:?}");
    let ms = messages("rooms: \"*\"\nrules:\n  - name: r\n    when: { user_regex: \"(\" }\n    action: deny\n");
    assert!(ms[0].contains("unclosed group"), "{ms:?}");
}

#[test]
fn structural_problems() {
    assert!(messages("rooms: \"*\"\nrules: []\n")[0].starts_with("2: `rules` is empty"));
    assert!(messages("rooms: \"*\"\n")[0].contains("missing key `rules`"));
    assert!(messages("rules:\n  - name: a\n    action: deny\n")[0].contains("missing key `rooms`"));
    assert!(
        messages(&format!("rooms: [\"!{}\"]\nrules:\n  - {{name: a, action: deny}}\n", "a".repeat(300)))[0]
            .contains("not a valid room ID")
    );
    assert!(messages("- a\n- b\n")[0].contains("must be a mapping"));
    assert!(
        messages("rooms: \"*\"\nrules:\n  - {name: a, action: deny, notify: maybe}\n")[0].contains("true or false")
    );
    assert!(
        messages("rooms: \"*\"\nrules:\n  - {name: a, action: deny, when: {server: \"[x\"}}\n")[0]
            .contains("not a valid glob")
    );
    assert!(messages("rooms: \"*\"\nrooms: \"*\"\nrules: []\n")[0].contains("given twice"));
    let ms = messages("rooms: [\"*\"\nrules:\n");
    assert!(ms[0].contains("not valid YAML"), "{ms:?}");
    assert!(
        messages("rooms: \"*\"\nrules:\n  - {name: a, action: deny, when: {any: []}}\n")[0].contains("at least one")
    );
    assert!(
        messages(
            "rooms: \"*\"\nrules:\n  - {name: a, action: deny, when: {room_knocks: {more_than: -1, within: 1m}}}\n"
        )[0]
        .contains("whole number")
    );
}

#[test]
fn conflicts_across_files_are_reported() {
    let a = Source {
        path: "a.yaml".into(),
        text: "name: same\nrooms: [\"!r:x\", \"*\"]\nrules:\n  - {name: a, action: deny}\n".into(),
    };
    let b = Source {
        path: "b.yaml".into(),
        text: "name: same\nrooms: [\"!r:x\", \"*\"]\nrules:\n  - {name: a, action: deny}\n".into(),
    };
    let ps = PolicySet::load(&[a, b]).unwrap_err();
    let text = format_problems(&ps);
    assert!(text.contains("b.yaml:1:7: a policy named `same` is already defined in a.yaml:1"), "{text}");
    assert!(text.contains("b.yaml:2:9: room `!r:x` is already governed by the policy in a.yaml:2"), "{text}");
    assert!(text.contains("\"*\" is already claimed"), "{text}");
}

#[test]
fn content_hash_ignores_order_but_not_content() {
    let a = Source { path: "a".into(), text: "1".into() };
    let b = Source { path: "b".into(), text: "2".into() };
    assert_eq!(content_hash(&[a.clone(), b.clone()]), content_hash(&[b.clone(), a.clone()]));
    assert_ne!(content_hash(std::slice::from_ref(&a)), content_hash(&[Source { text: "3".into(), ..a }]));
}

mod property {
    //! The indexed path decides exactly like the plain rule-by-rule evaluation.
    use proptest::prelude::*;

    use super::*;

    fn atom() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec!["a.org", "*.org", "b.*", "*", "c.net", "localhost:*"])
                .prop_map(|g| format!("server: \"{g}\"")),
            prop::sample::select(vec!["@a*:*", "@*:a.org", "@bob:*", "@*"]).prop_map(|g| format!("user: \"{g}\"")),
            prop::sample::select(vec!["^@[ab]", "bob", "[0-9]"]).prop_map(|r| format!("user_regex: \"{r}\"")),
            prop::sample::select(vec!["(?i)spam", "^$", "join"])
                .prop_map(|r| format!("reason: {{ matches: \"{r}\" }}")),
            prop::sample::select(vec!["[spam]", "[free money, join]", "[please]"])
                .prop_map(|w| format!("reason: {{ contains: {w} }}")),
            any::<bool>().prop_map(|b| format!("reason: {{ missing: {b} }}")),
            (0u8..20).prop_map(|n| format!("reason: {{ min_length: {n} }}")),
            any::<bool>().prop_map(|b| format!("displayname: {{ missing: {b} }}")),
            prop::sample::select(vec!["(?i)bob", "x"]).prop_map(|r| format!("displayname: {{ matches: \"{r}\" }}")),
            prop::sample::select(vec!["\"#friends:x\"", "\"!club:x\""]).prop_map(|r| format!("member_of: [{r}]")),
            (0u64..4).prop_map(|n| format!("room_knocks: {{ more_than: {n}, within: 10m }}")),
        ]
    }

    fn cond() -> impl Strategy<Value = String> {
        let leaf = prop::collection::vec(atom(), 0..3).prop_map(|mut atoms| {
            // One of each key per mapping, as YAML requires.
            let mut seen = std::collections::HashSet::new();
            atoms.retain(|a| seen.insert(a.split(':').next().unwrap_or_default().to_owned()));
            format!("{{ {} }}", atoms.join(", "))
        });
        leaf.prop_recursive(3, 12, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..3).prop_map(|cs| format!("{{ any: [{}] }}", cs.join(", "))),
                prop::collection::vec(inner.clone(), 1..3).prop_map(|cs| format!("{{ all: [{}] }}", cs.join(", "))),
                inner.prop_map(|c| format!("{{ not: {c} }}")),
            ]
        })
    }

    fn policy() -> impl Strategy<Value = String> {
        prop::collection::vec((cond(), prop::sample::select(Action::NAMES.to_vec())), 1..12).prop_map(|rules| {
            let mut y = String::from("rooms: \"!r:x\"\nrules:\n");
            for (i, (c, a)) in rules.iter().enumerate() {
                y.push_str(&format!("  - name: r{i}\n    when: {c}\n    action: {a}\n"));
            }
            y
        })
    }

    fn knock_parts() -> impl Strategy<Value = (String, Option<String>, Option<String>, bool, u64)> {
        (
            prop::sample::select(vec!["@a:a.org", "@bob:b.net", "@alice:c.net", "@7:localhost:8448", "@x:a.org"]),
            prop::option::of(prop::sample::select(vec![
                "",
                "please let me join",
                "SPAM spam",
                "free money",
                "free time",
            ])),
            prop::option::of(prop::sample::select(vec!["Bob", "x", ""])),
            any::<bool>(),
            0u64..6,
        )
            .prop_map(|(u, r, d, m, n)| (u.to_owned(), r.map(str::to_owned), d.map(str::to_owned), m, n))
    }

    /// A regex made of pieces that stress the engine's size limits and syntax.
    fn regex() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            r"\w", r"\d", r"\s", r"\b", ".", "a", "(?i)", "[a-z]", "[^x]", "(", ")", "|", "*", "+", "?", "{2,6}",
            "{3}", "{1,20}", "^", "$", r"\p{L}", "é", "[", "]", "\\",
        ]);
        prop::collection::vec(piece, 1..8).prop_map(|ps| ps.concat())
    }

    /// A glob made of pieces, valid or not.
    fn glob() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec!["*", "?", "a", ".org", ":", "@", "[ab]", "{x,y}", "[", "}", "**", "\\"]);
        prop::collection::vec(piece, 1..6).prop_map(|ps| ps.concat())
    }

    fn hostile_policy() -> impl Strategy<Value = String> {
        let cond = prop_oneof![
            regex().prop_map(|r| format!("reason: {{ matches: '{}' }}", r.replace('\'', "''"))),
            regex().prop_map(|r| format!("user_regex: '{}'", r.replace('\'', "''"))),
            regex().prop_map(|r| format!("displayname: {{ matches: '{}' }}", r.replace('\'', "''"))),
            glob().prop_map(|g| format!("server: '{g}'")),
            glob().prop_map(|g| format!("user: '{g}'")),
        ];
        prop::collection::vec(cond, 1..8).prop_map(|conds| {
            let mut y = String::from("rooms: \"!r:x\"\nrules:\n");
            for (i, c) in conds.iter().enumerate() {
                y.push_str(&format!("  - name: r{i}\n    when: {{ {c} }}\n    action: deny\n"));
            }
            y
        })
    }

    /// Text made of policy-file pieces, in any order: mostly not a valid policy.
    fn policy_text() -> impl Strategy<Value = String> {
        let piece = prop::sample::select(vec![
            "rooms: \"*\"\n",
            "rooms: [\"!r:x\", \"#a:x\"]\n",
            "rules:\n",
            "  - name: a\n",
            "    when: ",
            "{ reason: { matches: '\\w{2,6}' } }\n",
            "{ server: '*.x' }\n",
            "{ any: [ { user: '@*' } ] }\n",
            "    action: deny\n",
            "    action: nope\n",
            "default: review\n",
            "dry_run: true\n",
            "- ",
            ": ",
            "{",
            "}",
            "[",
            "]",
            "'",
            "\"",
            "&a ",
            "*a ",
            "!!str ",
            "\t",
            "\n",
            "#c\n",
            "---\n",
            "\u{0}",
            "é",
            "9999999999999999999999",
        ]);
        prop::collection::vec(piece, 0..30).prop_map(|ps| ps.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        /// Any text as a policy file: problems with positions, or a policy that decides;
        /// never a panic.
        #[test]
        fn any_policy_text_is_checked_or_refused(text in policy_text()) {
            match PolicySet::load(&[Source { path: "p.yaml".into(), text }]) {
                Ok(set) => {
                    for p in set.policies() {
                        let k = Knock { user: "@a:x", room: "!r:x", reason: Some("hello there"), ..Default::default() };
                        prop_assert_eq!(p.decide(&k), p.explain(&k).decision);
                    }
                }
                Err(problems) => prop_assert!(!problems.is_empty()),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// The check is exact: a regex it accepts builds, and one it refuses does not.
        #[test]
        fn the_regex_check_is_the_build(r in regex()) {
            let checked = crate::policy::compile::check_regex(&r);
            let built = crate::policy::compile::build_regex(&r);
            prop_assert_eq!(checked.is_ok(), built.is_ok(), "{}: {:?} / {:?}", r, checked, built.err());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Whatever a policy author writes: what the check accepts decides and explains every
        /// knock without panicking, and the indexes agree with the plain path.
        #[test]
        fn what_the_check_accepts_decides_every_knock(
            yaml in hostile_policy(),
            texts in prop::collection::vec("[a-zé0-9 @:.]{0,30}", 1..6),
        ) {
            let Ok(set) = PolicySet::load(&[Source { path: "p.yaml".into(), text: yaml.clone() }]) else {
                return Ok(());
            };
            let p = &set.policies()[0];
            for t in &texts {
                let user = format!("@{}:a.org", t.replace([' ', '@', ':'], ""));
                let k = Knock {
                    user: &user,
                    room: "!r:x",
                    reason: Some(t),
                    displayname: Some(t),
                    ..Default::default()
                };
                prop_assert_eq!(p.decide(&k), p.decide_plainly(&k), "{}", yaml);
                prop_assert_eq!(p.decide(&k), p.explain(&k).decision);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn indexed_equals_plain(yaml in policy(), knocks in prop::collection::vec(knock_parts(), 1..8)) {
            let set = PolicySet::load(&[Source { path: "p.yaml".into(), text: yaml.clone() }])
                .unwrap_or_else(|ps| panic!("{}\n{yaml}", format_problems(&ps)));
            let p = &set.policies()[0];
            for (user, reason, displayname, member, n) in &knocks {
                let rooms = if *member { vec!["#friends:x".to_owned()] } else { vec![] };
                let counts = [(Duration::from_secs(600), *n)];
                let k = Knock {
                    user,
                    room: "!r:x",
                    reason: reason.as_deref(),
                    displayname: displayname.as_deref(),
                    member_of: &rooms,
                    room_knocks: &counts,
                    user_knocks: &[],
                    lists: None,
                    account: None,
                    lockdown: *n % 3 == 0,
                };
                prop_assert_eq!(p.decide(&k), p.decide_plainly(&k), "{}", yaml);
                prop_assert_eq!(p.decide(&k), p.explain(&k).decision);
            }
        }
    }
}

const BAN_LIST_POLICY: &str = r##"
name: community
rooms: ["!r:x"]
default: review
rules:
  - name: community-bans
    when:
      ban_list: ["#community-bans:example.org", "!AbCdEf:example.org"]
    action: ban
    reason: "Listed on {list}: {list_reason}"
  - name: friends
    when:
      user: "@*:friends.org"
    action: accept
"##;

fn ban_lists() -> std::collections::HashMap<String, BanList> {
    use serde_json::json;
    let mut bans = BanList::new();
    let rules = [
        (
            "m.policy.rule.user",
            "u",
            json!({"entity": "@spam*:friends.org", "recommendation": "m.ban", "reason": "spam"}),
        ),
        ("m.policy.rule.server", "s", json!({"entity": "*.evil.org", "recommendation": "m.ban", "reason": "abuse"})),
    ];
    for (i, (t, k, c)) in rules.into_iter().enumerate() {
        let key = banlist::RuleKey { event_type: t.into(), state_key: k.into() };
        bans.apply(key, banlist::parse(t, &serde_json::from_value(c).unwrap(), &format!("$e{i}")).unwrap());
    }
    let mut lists = std::collections::HashMap::new();
    lists.insert("!AbCdEf:example.org".to_owned(), bans);
    lists
}

#[test]
fn ban_lists_decide_with_the_entry_named() {
    let set = set(BAN_LIST_POLICY);
    let lists = ban_lists();
    let listed = knock("@spammer:friends.org", None).with_lists_for_tests(&lists);
    let d = decide(&set, &listed);
    assert_eq!(d.rule.as_deref(), Some("community-bans"));
    assert_eq!(d.action, Action::Ban);
    assert_eq!(d.reason.as_deref(), Some("Listed on !AbCdEf:example.org: spam"));
    let hit = d.list.as_ref().unwrap();
    assert_eq!((hit.entity.as_str(), hit.kind), ("@spam*:friends.org", banlist::EntityKind::User));
    assert!(
        d.explanation.contains("listed on !AbCdEf:example.org, user rule \"@spam*:friends.org\""),
        "{}",
        d.explanation
    );
    let by_server = decide(&set, &knock("@anyone:chat.evil.org", None).with_lists_for_tests(&lists));
    assert_eq!(by_server.reason.as_deref(), Some("Listed on !AbCdEf:example.org: abuse"));
    let friend = decide(&set, &knock("@alice:friends.org", None).with_lists_for_tests(&lists));
    assert_eq!(friend.rule.as_deref(), Some("friends"));
    assert_eq!(friend.list, None);
    // Without lists, `ban_list` never holds, and explain says so.
    let p = set.policy_for("!r:x", &[]).unwrap();
    let t = p.explain(&knock("@spammer:friends.org", None));
    assert_eq!(t.decision.rule.as_deref(), Some("friends"));
    assert!(t.rules[0].detail.contains("no lists known"), "{}", t.rules[0].detail);
    assert_eq!(set.ban_lists(), vec!["!AbCdEf:example.org".to_owned(), "#community-bans:example.org".to_owned()]);
}

#[test]
fn ban_list_names_rooms() {
    let ps = problems(&BAN_LIST_POLICY.replace("\"!AbCdEf:example.org\"", "\"bans\""));
    assert_eq!(ps.len(), 1, "{ps:?}");
    assert!(
        ps[0].message.contains("`ban_list`: `bans` is not a room ID (!…) or alias (#…:server)"),
        "{}",
        ps[0].message
    );
    let one =
        set(&BAN_LIST_POLICY.replace("[\"#community-bans:example.org\", \"!AbCdEf:example.org\"]", "\"#bans:x\""));
    assert_eq!(one.ban_lists(), vec!["#bans:x".to_owned()]);
    let ps = problems(&BAN_LIST_POLICY.replace("{list_reason}", "{list_reasons}"));
    assert!(ps[0].message.contains("unknown placeholder `{list_reasons}`"), "{}", ps[0].message);
}

#[test]
fn the_checked_in_schema_is_current() {
    let checked_in = include_str!("../../policies/schema.json");
    assert!(
        checked_in == format::schema_json(),
        "policies/schema.json is stale: run `cargo run -- policy schema > policies/schema.json`"
    );
}

#[test]
fn the_schema_model_and_the_reader_agree_on_the_examples() {
    for name in ["my-room", "examples/community", "examples/support", "examples/strict"] {
        let path = format!("{}/policies/{name}.yaml", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let model: Result<format::PolicyFile, _> = serde_yaml::from_str(&text);
        assert!(model.is_ok(), "{path}: {:?}", model.err());
        assert!(PolicySet::load(&[Source { path: path.clone(), text }]).is_ok(), "{path}");
    }
    // And both refuse an unknown key.
    let bad = "rooms: \"*\"\nrules:\n  - {name: a, action: deny, when: {servr: x}}\n";
    assert!(serde_yaml::from_str::<format::PolicyFile>(bad).is_err());
    assert!(PolicySet::load(&[Source { path: "b.yaml".into(), text: bad.into() }]).is_err());
}

#[test]
fn account_conditions_go_by_the_facts_and_only_unknown_holds_without_them() {
    use crate::policy::AccountFacts;
    let set = set(r#"rooms: ["!r:x"]
default: accept
rules:
  - name: unknown
    when: { account: { unknown: true } }
    action: review
  - name: shadow
    when: { account: { shadow_banned: true } }
    action: deny
  - name: young
    when: { account: { younger_than: 1d, locked: false } }
    action: review
  - name: old-and-locked
    when: { account: { older_than: 30d, locked: true } }
    action: ban
"#);
    let known = |age_h: u64, shadow: bool, locked: bool| AccountFacts::Known {
        age: Some(Duration::from_secs(age_h * 3600)),
        shadow_banned: shadow,
        locked,
        suspended: false,
    };
    let with = |facts: Option<&AccountFacts>| {
        let k = Knock { account: facts, ..knock("@a:x", None) };
        rule_of(&set, &k)
    };
    assert_eq!(with(None).as_deref(), Some("unknown"), "not looked up: unknown");
    let remote = AccountFacts::Unknown("@a:y is not a local user".into());
    assert_eq!(with(Some(&remote)).as_deref(), Some("unknown"));
    assert_eq!(with(Some(&known(1, true, false))).as_deref(), Some("shadow"));
    assert_eq!(with(Some(&known(1, false, false))).as_deref(), Some("young"));
    assert_eq!(with(Some(&known(1, false, true))).as_deref(), None, "young but locked: no rule, the default");
    assert_eq!(with(Some(&known(24 * 40, false, true))).as_deref(), Some("old-and-locked"));
    let p = set.policy_for("!r:x", &[]).unwrap();
    assert!(p.uses_account());
    let k = Knock { account: Some(&remote), ..knock("@a:x", None) };
    let trace = p.explain(&k);
    assert!(trace.rules[0].detail.contains("not a local user"), "{:?}", trace.rules[0]);
    // The reader names a wrong key and a bad duration.
    let bad = "rooms: [\"!r:x\"]\nrules:\n  - name: a\n    when: { account: { yonger_than: 1d, older_than: soon } }\n    action: deny\n";
    let problems = PolicySet::load(&[Source { path: "p.yaml".into(), text: bad.into() }]).err().unwrap();
    let text = format_problems(&problems);
    assert!(text.contains("yonger_than") && text.contains("younger_than"), "{text}");
    assert!(text.contains("`account.older_than`"), "{text}");
}

#[test]
fn a_room_in_lockdown_accepts_no_one_by_policy() {
    let s = set("rooms: \"*\"\nrules:\n  - {name: ok, action: accept}\n");
    let calm = decide(&s, &knock("@a:x", None));
    assert_eq!((calm.action, calm.held_by_lockdown), (Action::Accept, false));
    let held = decide(&s, &Knock { lockdown: true, ..knock("@a:x", None) });
    assert_eq!((held.action, held.held_by_lockdown), (Action::Review, true));
    assert!(held.explanation.contains("lockdown"), "{}", held.explanation);
    // Deny, ban, review and ignore are unchanged.
    for a in ["deny", "ban", "review", "ignore"] {
        let s = set(&format!("rooms: \"*\"\nrules:\n  - {{name: r, action: {a}}}\n"));
        let d = decide(&s, &Knock { lockdown: true, ..knock("@a:x", None) });
        assert_eq!((d.action.as_str(), d.held_by_lockdown), (a, false));
    }
}

#[test]
fn a_rule_may_put_the_room_in_lockdown() {
    let s = set(
        "rooms: \"*\"\nrules:\n  - {name: wave, when: {room_knocks: {more_than: 3, within: 1m}}, action: review, lockdown: 2h}\n  - {name: ok, action: accept, lockdown: 30m}\n",
    );
    let wave = [(Duration::from_secs(60), 4)];
    let d = decide(&s, &Knock { room_knocks: &wave, ..knock("@a:x", None) });
    assert_eq!(
        (d.rule.as_deref(), d.action, d.lockdown),
        (Some("wave"), Action::Review, Some(Duration::from_secs(7200)))
    );
    // A rule that accepts and locks down: the knock that starts the lockdown is held too.
    let d = decide(&s, &knock("@a:x", None));
    assert_eq!((d.action, d.lockdown, d.held_by_lockdown), (Action::Review, Some(Duration::from_secs(1800)), true));
    let m = messages("rooms: \"*\"\nrules:\n  - {name: a, action: review, lockdown: soon}\n");
    assert!(m[0].contains("`lockdown`"), "{m:?}");
}
