// Package cli defines the herald command tree. Each subcommand lives in its own file and
// only wires packages together; the behaviour lives in the packages it calls.
package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/herald-dev/herald/internal/version"
)

// NewRootCommand returns the herald command with every subcommand attached.
func NewRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "herald",
		Short:         "Herald delivers signed webhooks from Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(newManagerCommand(), newDispatcherCommand(), newVersionCommand())
	root.AddCommand(newPublishCommand(), newVerifyCommand())
	return root
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
