// Package cli defines the herald user commands (publish, verify, dlq, endpoint, events,
// attempts, docs, version): a thin layer over pkg/client for the dispatcher's HTTP APIs
// and over the API server for the resources. Each subcommand lives in its own file. The
// servers' entry points (herald manager, herald dispatcher) are in cmd/; main.go puts the
// two together into the one herald binary, as Cluster API's clusterctl separates its
// commands from its client.
package cli

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/herald-dev/herald/internal/version"
)

// NewRootCommand returns the herald command with every user command attached (main.go
// adds the servers).
func NewRootCommand() *cobra.Command { return NewRootCommandAs("herald") }

// NewRootCommandAs returns the command tree named after the program as invoked
// (os.Args[0]): kubectl runs a kubectl-herald found on PATH for `kubectl herald ...`,
// and then usage, help and examples say `kubectl herald`.
func NewRootCommandAs(invoked string) *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald delivers signed webhooks from Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: false,
		// Whatever a command prints goes through printableWriter (terminal.go).
		PersistentPreRun: printableOutput,
	}
	root.AddCommand(newVersionCommand())
	root.AddCommand(newPublishCommand(), newVerifyCommand())
	root.AddCommand(newDLQCommand(), newEndpointCommand(), newEventsCommand(), newAttemptsCommand(), newDocsCommand(), newConsoleCommand())
	if name := displayName(invoked); name != "herald" {
		root.Annotations = map[string]string{cobra.CommandDisplayNameAnnotation: name}
		renameExamples(root, name)
	}
	return root
}

// displayName is "kubectl herald" for a kubectl plugin binary, else "herald".
func displayName(invoked string) string {
	base := strings.TrimSuffix(filepath.Base(invoked), ".exe")
	if plugin, ok := strings.CutPrefix(base, "kubectl-"); ok && plugin != "" {
		// kubectl maps dashes in a plugin's file name to spaces, and _ to -.
		return "kubectl " + strings.ReplaceAll(strings.ReplaceAll(plugin, "-", " "), "_", "-")
	}
	return "herald"
}

var exampleCommand = regexp.MustCompile(`(?m)^(\s*)herald `)

func renameExamples(c *cobra.Command, name string) {
	c.Example = exampleCommand.ReplaceAllString(c.Example, "${1}"+name+" ")
	for _, sub := range c.Commands() {
		renameExamples(sub, name)
	}
}

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the herald version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.Version)
		},
	}
}
