package compute

import (
	"strings"
	"testing"
)

func TestParseHeaderModeAndDelimiter(t *testing.T) {
	for in, want := range map[string]HeaderMode{"auto": HeaderAuto, "yes": HeaderPresent, "true": HeaderPresent,
		"present": HeaderPresent, "no": HeaderAbsent, "false": HeaderAbsent, "absent": HeaderAbsent} {
		if got, err := ParseHeaderMode(in); err != nil || got != want {
			t.Errorf("ParseHeaderMode(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "Yes", "1", "maybe"} {
		if _, err := ParseHeaderMode(in); err == nil {
			t.Errorf("ParseHeaderMode(%q) accepted", in)
		}
	}
	for in, want := range map[string]byte{",": ',', ";": ';', "tab": '\t', `\t`: '\t', "\t": '\t', "|": '|'} {
		if got, err := ParseDelimiter(in); err != nil || got != want {
			t.Errorf("ParseDelimiter(%q) = %q, %v", in, got, err)
		}
	}
	for _, in := range []string{"", `"`, "\r", "\n", ";;", "TAB"} {
		if _, err := ParseDelimiter(in); err == nil {
			t.Errorf("ParseDelimiter(%q) accepted", in)
		}
	}
	if HeaderAbsent.String() != "no" || OnErrorSkip.String() != "skip" || OnErrorFail.String() != "fail" {
		t.Error("mode names")
	}
}

func TestParseQuoteMode(t *testing.T) {
	for in, want := range map[string]QuoteMode{"strict": QuotesStrict, "lazy": QuotesLazy} {
		if got, err := ParseQuoteMode(in); err != nil || got != want || got.String() != in {
			t.Errorf("ParseQuoteMode(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "Lazy", "loose", "true"} {
		if _, err := ParseQuoteMode(in); err == nil {
			t.Errorf("ParseQuoteMode(%q) accepted", in)
		}
	}
	if _, err := (Options{Quotes: 2}).withDefaults(); err == nil {
		t.Error("quote mode 2 accepted")
	}
	// Parts written in lazy mode do not merge with strict ones; strict
	// parts say what they said before quote modes existed.
	if s := (Options{}).settings(); strings.Contains(s, "quotes") {
		t.Errorf("strict settings %q", s)
	}
	if s := (Options{Quotes: QuotesLazy}).settings(); !strings.Contains(s, " quotes=lazy ") {
		t.Errorf("lazy settings %q", s)
	}
}
