package dispatcher

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The command reads its file and its flags into one configuration, the command line
// winning, and refuses a configuration config.Validate refuses before it connects to
// anything.
func TestDispatcherCommand_ConfigFileThenFlagsThenValidation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "dispatcher.yaml")
	if err := os.WriteFile(file, []byte("apiVersion: config.herald.dev/v1alpha1\nkind: DispatcherConfiguration\nstore:\n  dataDir: /from/file\n  replicas: 9\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := NewCommand()
	if err := cmd.ParseFlags([]string{"--config", file, "--data-dir=/from/flag"}); err != nil {
		t.Fatal(err)
	}
	err := cmd.PreRunE(cmd, nil)
	if err == nil || !strings.Contains(err.Error(), "store.replicas: must be between 1 and 5") {
		t.Fatalf("PreRunE = %v, want the file's store.replicas refused", err)
	}
	if got := cmd.Flags().Lookup("data-dir").Value.String(); got != "/from/flag" {
		t.Errorf("--data-dir = %q after the file, want the command line's /from/flag", got)
	}

	// A flat file of flag names, as an older manager rendered it.
	flat := filepath.Join(dir, "flat.yaml")
	if err := os.WriteFile(flat, []byte("max-body-bytes: \"2048\"\nwatch-namespaces: shop\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd = NewCommand()
	if err := cmd.ParseFlags([]string{"--config", flat}); err != nil {
		t.Fatal(err)
	}
	if err := cmd.PreRunE(cmd, nil); err != nil {
		t.Fatalf("PreRunE on a flat file: %v", err)
	}
	if got := cmd.Flags().Lookup("max-body-bytes").Value.String(); got != "2048" {
		t.Errorf("--max-body-bytes = %q, want the flat file's 2048", got)
	}
}
