package compute

import "testing"

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
