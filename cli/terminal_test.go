package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestPrintableWriter(t *testing.T) {
	for _, c := range []struct{ why, in, want string }{
		{"plain text, newlines and tabs are the commands' own layout", "a\tb\nc ü 日本\n", "a\tb\nc ü 日本\n"},
		{"ESC [ 2 J would clear the screen", "body \x1b[2J end", `body \u001b[2J end`},
		{"a carriage return would overwrite the line before it", "real\rFAKE", `real\u000dFAKE`},
		{"BEL rings, backspace erases", "a\x07b\x08c", `a\u0007b\u0008c`},
		{"an OSC sequence sets the window title (or the clipboard)", "\x1b]0;owned\x07", `\u001b]0;owned\u0007`},
		{"DEL", "a\x7fb", `a\u007fb`},
		{"C1 CSI, which some terminals read as ESC [", "a\u009b2Jb", `a\u009b2Jb`},
		{"NUL", "a\x00b", `a\u0000b`},
		{"a byte that is not UTF-8", "a\xffb", "a\ufffdb"},
	} {
		t.Run(c.why, func(t *testing.T) {
			var buf bytes.Buffer
			n, err := printable(&buf).Write([]byte(c.in))
			if err != nil || n != len(c.in) {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, len(c.in))
			}
			if buf.String() != c.want {
				t.Fatalf("wrote %q, want %q", buf.String(), c.want)
			}
		})
	}
}

func TestPrintableWriter_ARuneCutBetweenWritesIsKept(t *testing.T) {
	var buf bytes.Buffer
	w := printable(&buf)
	s := []byte("é\u009b")
	for i := range s {
		if _, err := w.Write(s[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if buf.String() != `é\u009b` {
		t.Fatalf("wrote %q", buf.String())
	}
}

// JSON written through the writer is still JSON, and decodes to the same value.
func TestPrintableWriter_KeepsJSONValues(t *testing.T) {
	value := map[string]string{"body": "\x1b[2J\r\x07\x7f\u009b ok \"quoted\" \\ \t\n"}
	var buf bytes.Buffer
	if err := printObject(printable(&buf), "json", value); err != nil {
		t.Fatal(err)
	}
	if strings.ContainsAny(buf.String(), "\x1b\r\x07\x7f\u009b") {
		t.Fatalf("control characters reached the output: %q", buf.String())
	}
	var back map[string]string
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["body"] != value["body"] {
		t.Fatalf("decoded %q, %v; want %q", back["body"], err, value["body"])
	}
}
