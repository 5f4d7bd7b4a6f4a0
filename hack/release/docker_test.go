package release

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/herald-dev/herald/internal/testenv"
)

// TestDockerfile_BuildsAStaticVersionedBinaryFromTheContext runs the builder stage's RUN
// steps, as their shell would, in a copy of exactly the files .dockerignore lets into the
// build context, then checks the binary the final stage copies: it exists, is static
// (distroless/static has no libc) and reports the version given as a build argument.
// A new top-level package missing from the .dockerignore allowlist fails here.
func TestDockerfile_BuildsAStaticVersionedBinaryFromTheContext(t *testing.T) {
	root := testenv.RepoRoot()
	df := parseDockerfile(t, filepath.Join(root, "Dockerfile"))
	builder, final := df.stage(t, "builder"), df.stages[len(df.stages)-1]

	ctx := t.TempDir()
	size := copyContext(t, root, ctx, parseDockerignore(t, filepath.Join(root, ".dockerignore")))
	// bin/ alone is gigabytes; the sources are a few megabytes.
	if size > 20<<20 {
		t.Errorf("build context is %d MiB; .dockerignore lets in more than the sources", size>>20)
	}

	const version = "v0.0.0-dockerfile-test"
	env := append(os.Environ(),
		// The image is linux whatever the build machine; buildx sets these.
		"TARGETOS=linux", "TARGETARCH="+runtime.GOARCH, "VERSION="+version,
		"GOFLAGS=", // as in the golang image
	)
	for _, run := range builder.all("RUN") {
		cmd := exec.Command("sh", "-c", stripRunFlags(run))
		cmd.Dir, cmd.Env = ctx, env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("RUN %s: %v\n%s", run, err, out)
		}
	}

	workdir := builder.last(t, "WORKDIR")
	from, to, ok := strings.Cut(strings.TrimPrefix(final.last(t, "COPY"), "--from=builder "), " ")
	if !ok || !strings.HasPrefix(final.last(t, "COPY"), "--from=builder ") {
		t.Fatalf("final stage COPY %q does not copy from the builder", final.last(t, "COPY"))
	}
	rel, err := filepath.Rel(workdir, from)
	if err != nil || strings.HasPrefix(rel, "..") {
		t.Fatalf("final stage copies %s, outside the builder's WORKDIR %s", from, workdir)
	}
	binary := filepath.Join(ctx, rel)
	if want := `["` + to + `"]`; final.last(t, "ENTRYPOINT") != want {
		t.Errorf("ENTRYPOINT %s, want %s, the binary the final stage copies", final.last(t, "ENTRYPOINT"), want)
	}

	f, err := elf.Open(binary)
	if err != nil {
		t.Fatalf("the builder did not write %s (copied by the final stage): %v", from, err)
	}
	libs, _ := f.ImportedLibraries()
	dynamic := len(libs) > 0
	for _, p := range f.Progs {
		dynamic = dynamic || p.Type == elf.PT_INTERP
	}
	f.Close()
	if dynamic {
		t.Errorf("%s is dynamically linked (%v); distroless/static has no libc", from, libs)
	}
	if runtime.GOOS != "linux" {
		t.Logf("not running the linux binary on %s", runtime.GOOS)
		return
	}
	out, err := exec.Command(binary, "version").Output()
	if err != nil || strings.TrimSpace(string(out)) != version {
		t.Errorf("herald version = %q (err %v), want the build argument %s", out, err, version)
	}

}

// The image runs as the user the manifests ask for; a mismatch leaves the pods to
// whichever wins, and runAsNonRoot needs a numeric USER to check.
func TestDockerfile_RunsAsTheManifestsNonRootUser(t *testing.T) {
	root := testenv.RepoRoot()
	final := parseDockerfile(t, filepath.Join(root, "Dockerfile")).stages
	stage := final[len(final)-1]
	if base := stage.from; !strings.HasPrefix(base, "gcr.io/distroless/static") {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static", base)
	}

	data, err := os.ReadFile(filepath.Join(root, "config", "manager", "manager.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var deploy struct {
		Spec struct {
			Template struct {
				Spec struct {
					SecurityContext struct {
						RunAsUser  int64 `json:"runAsUser"`
						RunAsGroup int64 `json:"runAsGroup"`
					} `json:"securityContext"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &deploy); err != nil {
		t.Fatal(err)
	}
	sc := deploy.Spec.Template.Spec.SecurityContext
	want := strconv.FormatInt(sc.RunAsUser, 10) + ":" + strconv.FormatInt(sc.RunAsGroup, 10)
	if got := stage.last(t, "USER"); got != want {
		t.Errorf("USER %s, want %s as config/manager/manager.yaml runs the pod", got, want)
	}
}
