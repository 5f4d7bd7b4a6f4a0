package dispatcher

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDispatcherConfigFile_SetsFlagsCommandLineWins(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dispatcher.yaml")
	if err := os.WriteFile(path, []byte("max-body-bytes: 1048576\nallow-plain-http: true\nwatch-namespaces: [a, b]\ndata-dir: /from/file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := NewCommand()
	if err := cmd.Flags().Parse([]string{"--data-dir=/from/flag"}); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cmd.Flags(), path); err != nil {
		t.Fatalf("applyConfigFile: %v", err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	for name, want := range map[string]string{
		"max-body-bytes":   "1048576",
		"allow-plain-http": "true",
		"watch-namespaces": "[a,b]",
		"data-dir":         "/from/flag",
	} {
		if got := get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("no-such-flag: 1\n"), 0o600)
	if err := applyConfigFile(NewCommand().Flags(), bad); err == nil {
		t.Error("an unknown setting must be refused")
	}
}
