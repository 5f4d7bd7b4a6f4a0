// Package version holds the build version, set with -ldflags at build time.
package version

// Version of this build; "dev" when built without the Makefile.
var Version = "dev"

// UserAgent is sent with every outbound request and API call.
func UserAgent(component string) string {
	return "herald-" + component + "/" + Version
}
