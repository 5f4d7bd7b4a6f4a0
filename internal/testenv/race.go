//go:build race

package testenv

// Race reports whether this test binary was built with the race detector; RaceBuild
// says whether the binaries a suite builds (herald) should be.
const Race = true
