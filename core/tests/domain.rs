//! Domain parsing, table-driven: plates, colours, vehicle types and time ranges.

use chrono::Duration;
use sentinela_core::domain::{Color, Plate, PlatePattern, TimeRange, VehicleType};

#[test]
fn plates_in_both_brazilian_formats_are_normalised() {
    let cases = [
        ("ABC1D23", "ABC1D23", "Mercosul"),
        ("abc1d23", "ABC1D23", "Mercosul, lower case"),
        ("ABC-1234", "ABC1234", "old format with hyphen"),
        ("ABC1234", "ABC1234", "old format without hyphen"),
        ("abc-1234", "ABC1234", "old format, lower case"),
        (" ABC 1D23 ", "ABC1D23", "spaces around and inside"),
        ("abc 1234", "ABC1234", "old format with a space"),
    ];
    for (input, expected, why) in cases {
        let plate =
            Plate::parse(input).unwrap_or_else(|e| panic!("{why}: {input:?} rejected: {e}"));
        assert_eq!(plate.as_ref(), expected, "{why}");
    }
    assert!(Plate::parse("ABC1D23").unwrap().is_mercosul());
    assert!(!Plate::parse("ABC-1234").unwrap().is_mercosul());
}

#[test]
fn invalid_plates_are_rejected_naming_the_field_and_value() {
    let cases = [
        ("??", "two question marks"),
        ("", "empty"),
        ("ABC123", "six characters"),
        ("ABC12345", "eight characters"),
        ("1BC1D23", "digit where a letter must be"),
        ("ABCDD23", "letter where the first digit must be"),
        ("ABC1D2X", "letter in the last position"),
        ("ABC_1D23!", "punctuation"),
        ("ÁBC1D23", "accented letter"),
    ];
    for (input, why) in cases {
        let err = Plate::parse(input).expect_err(why);
        assert_eq!(err.field, "plate", "{why}");
        let message = err.to_string();
        assert!(
            message.starts_with("plate ") && message.contains("is not a Brazilian plate"),
            "{why}: {message}"
        );
        assert!(
            message.contains(&format!("{input:?}")),
            "{why}: the value is named: {message}"
        );
    }
    assert_eq!(
        Plate::parse("??").unwrap_err().to_string(),
        "plate \"??\" is not a Brazilian plate (expected ABC-1234 or ABC1D23; wildcards * and ? are allowed)"
    );
}

#[test]
fn plate_patterns_accept_wildcards_and_reject_overly_broad_ones() {
    let ok = [
        ("ABC1D23", "ABC1D23"),
        ("abc*", "ABC*"),
        ("AB?1D23", "AB?1D23"),
        ("*1D23", "*1D23"),
        ("abc-12*", "ABC12*"),
    ];
    for (input, expected) in ok {
        let pattern = PlatePattern::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(pattern.as_ref(), expected);
    }
    for (input, why) in [
        ("*", "no fixed character"),
        ("A*", "one fixed character"),
        ("??????1", "one fixed character with ?"),
        ("A*B*C", "two stars"),
        ("ABC1D234*", "more than seven fixed characters"),
        ("1*", "digit in a letter position"),
        ("AB?1D2", "six positions without a star"),
    ] {
        let err = PlatePattern::parse(input).expect_err(why);
        assert_eq!(err.field, "plate", "{why}");
    }
}

#[test]
fn colours_parse_in_english_and_portuguese() {
    let cases = [
        ("red", Color::Red),
        ("Vermelho", Color::Red),
        ("vermelha", Color::Red),
        ("black", Color::Black),
        ("preto", Color::Black),
        ("white", Color::White),
        ("BRANCO", Color::White),
        ("silver", Color::Silver),
        ("prata", Color::Silver),
        ("grey", Color::Gray),
        ("cinza", Color::Gray),
        ("blue", Color::Blue),
        ("azul", Color::Blue),
        ("verde", Color::Green),
        ("amarelo", Color::Yellow),
        (" laranja ", Color::Orange),
        ("marrom", Color::Brown),
        ("bege", Color::Beige),
        ("roxo", Color::Purple),
        ("rosa", Color::Pink),
    ];
    for (input, expected) in cases {
        assert_eq!(Color::parse(input), Ok(expected), "{input:?}");
    }
    let err = Color::parse("furta-cor").unwrap_err();
    assert_eq!(err.field, "color");
    assert!(
        err.to_string()
            .starts_with("color \"furta-cor\" is not a known colour")
    );
    assert!(
        Color::Silver.matches(Color::Gray),
        "silver and gray are one paint to a camera"
    );
    assert!(!Color::Red.matches(Color::Blue));
}

#[test]
fn vehicle_types_parse_in_english_and_portuguese_with_or_without_accents() {
    let cases = [
        ("car", VehicleType::Car),
        ("carro", VehicleType::Car),
        ("Automóvel", VehicleType::Car),
        ("moto", VehicleType::Motorcycle),
        ("motorcycle", VehicleType::Motorcycle),
        ("motocicleta", VehicleType::Motorcycle),
        ("ônibus", VehicleType::Bus),
        ("onibus", VehicleType::Bus),
        ("ÔNIBUS", VehicleType::Bus),
        ("bus", VehicleType::Bus),
        ("caminhão", VehicleType::Truck),
        ("caminhao", VehicleType::Truck),
        ("truck", VehicleType::Truck),
        ("Pickup Truck", VehicleType::Truck),
        ("van", VehicleType::Van),
    ];
    for (input, expected) in cases {
        assert_eq!(VehicleType::parse(input), Ok(expected), "{input:?}");
    }
    let err = VehicleType::parse("bicicleta").unwrap_err();
    assert_eq!(err.field, "vehicle_type");
    assert!(
        err.to_string()
            .contains("\"bicicleta\" is not a known vehicle type")
    );
}

#[test]
fn time_ranges_require_rfc3339_and_an_end_after_the_start() {
    let range = TimeRange::parse("2026-11-29T08:00:00-03:00", "2026-11-29T12:00:00-03:00")
        .expect("valid window");
    assert_eq!(
        range.start().to_rfc3339(),
        "2026-11-29T11:00:00+00:00",
        "stored in UTC"
    );
    assert_eq!(range.duration(), Duration::hours(4));

    let cases = [
        (
            "2026-11-29T12:00:00Z",
            "2026-11-29T08:00:00Z",
            "end_date",
            "end before start",
        ),
        (
            "2026-11-29T08:00:00Z",
            "2026-11-29T08:00:00Z",
            "end_date",
            "empty window",
        ),
        (
            "yesterday",
            "2026-11-29T08:00:00Z",
            "start_date",
            "start not a timestamp",
        ),
        (
            "2026-11-29T08:00:00Z",
            "2026-11-29 12:00",
            "end_date",
            "end without offset",
        ),
        (
            "2026-13-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
            "start_date",
            "month 13",
        ),
    ];
    for (start, end, field, why) in cases {
        let err = TimeRange::parse(start, end).expect_err(why);
        assert_eq!(err.field, field, "{why}: {err}");
    }

    let week = Duration::days(7);
    assert!(range.limit(week).is_ok());
    let long = TimeRange::parse("2026-11-01T00:00:00Z", "2026-11-09T00:00:00Z").unwrap();
    let err = long.limit(week).unwrap_err();
    assert_eq!(err.field, "end_date");
    assert!(err.to_string().contains("maximum is 168 hours"), "{err}");
}

#[test]
fn time_range_intersection_clips_a_window_to_a_recording() {
    let search = TimeRange::parse("2026-11-29T08:00:00Z", "2026-11-29T12:00:00Z").unwrap();
    let recording = TimeRange::parse("2026-11-29T07:59:30Z", "2026-11-29T08:00:30Z").unwrap();
    let clipped = search.intersect(&recording).expect("overlap");
    assert_eq!(clipped.start(), search.start());
    assert_eq!(clipped.end(), recording.end());
    let before = TimeRange::parse("2026-11-29T07:00:00Z", "2026-11-29T08:00:00Z").unwrap();
    assert!(
        search.intersect(&before).is_none(),
        "touching windows do not overlap"
    );
}

#[test]
fn plate_matching_tolerates_ocr_confusions_and_wildcards_and_ranks_near_misses() {
    let min = PlatePattern::DEFAULT_MIN_SCORE;
    let exact = PlatePattern::parse("ABC1D23").unwrap();
    let cases: [(&str, &str, Option<f64>, &str); 10] = [
        ("ABC1D23", "ABC1D23", Some(1.0), "exact"),
        ("ABC1D23", "ABC-1D23", Some(1.0), "OCR read a hyphen"),
        ("ABC1D23", "abc1d23", Some(1.0), "lower case"),
        (
            "ABC1D23",
            "BRASIL ABC1D23",
            Some(1.0),
            "plate inside a longer line",
        ),
        ("ABC1D23", "A8C1D23", Some(6.9 / 7.0), "8 read for B"),
        (
            "ABC1D23",
            "ABX1D23",
            Some(6.0 / 7.0),
            "one wrong character is a near miss",
        ),
        (
            "ABC1D23",
            "ABCID2Z",
            None,
            "a confusion plus a wrong character is too far",
        ),
        (
            "ABC1234",
            "ABC-I234",
            Some(6.9 / 7.0),
            "old format, I for 1",
        ),
        ("ABC1D23", "XYZ9W88", None, "another plate"),
        ("ABC1D23", "", None, "nothing read"),
    ];
    for (pattern, text, expected, why) in cases {
        let pattern = PlatePattern::parse(pattern).unwrap();
        let got = pattern.best_match([text], min).map(|m| m.score);
        match (expected, got) {
            (Some(want), Some(score)) => {
                assert!((score - want).abs() < 1e-9, "{why}: {score} vs {want}")
            }
            (None, None) => {}
            (want, got) => panic!("{why}: expected {want:?}, got {got:?}"),
        }
    }

    let wildcard = PlatePattern::parse("ABC*").unwrap();
    assert_eq!(wildcard.best_match(["ABC9Z99"], min).unwrap().score, 1.0);
    assert!(
        wildcard.best_match(["XBC9Z99"], min).unwrap().score < 1.0,
        "the fixed part must match"
    );
    assert!(wildcard.best_match(["XYZ9Z99"], min).is_none());
    let single = PlatePattern::parse("AB?1D23").unwrap();
    assert_eq!(single.best_match(["ABQ1D23"], min).unwrap().score, 1.0);
    assert_eq!(
        single.best_match(["ABQ1D23"], min).unwrap().candidate,
        "ABQ1D23"
    );

    // Near misses are ranked: exact, then one OCR confusion, then one wrong character.
    let ranked = exact.rank(["ABX1D23", "ABC1D23", "A8C1D23", "QQQ9Q99"], min);
    let order: Vec<&str> = ranked.iter().map(|m| m.candidate.as_str()).collect();
    assert_eq!(order, ["ABC1D23", "A8C1D23", "ABX1D23"]);
    assert!(ranked[0].score > ranked[1].score && ranked[1].score > ranked[2].score);
}
