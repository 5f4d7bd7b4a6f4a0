// Package config is the configuration of `herald dispatcher`, in one type: Dispatcher.
// Its flags bind to it, its --config file holds it, the manager renders it into the
// dispatcher's ConfigMap from its own flags (which are the dispatcher's, prefixed), and
// the dispatcher's packages receive the section they need: queue the Store and History,
// ingest the Ingest, delivery the Delivery, outcome the Status, the auth wiring the
// Auth, the sender and the watch the Outbound policy. Nothing copies a setting from one
// struct to another on the way. The model is cert-manager's
// internal/apis/config/controller: types, defaults, validation, and a golden file of the
// defaults.
//
// Map of the package:
//
//   - types.go: Dispatcher and its sections, each field documented with its meaning and
//     its default. The sections are defined here, not in the packages that use them, so
//     the file's format (an API: the manager of one release renders it, the dispatcher
//     reads it) changes only on purpose; they import nothing of the dispatcher, so the
//     manager renders the configuration without the engine.
//   - defaults.go: Default, the one place every default is written, and SetDefaults,
//     which the packages call for their Go callers' zero values.
//   - validation.go: Validate, the one judge; the dispatcher refuses to start and the
//     manager refuses to render on what it refuses, naming the key in the file.
//   - flags.go: BindFlags, the dispatcher's flags; BindManagerFlags, the manager's
//     --dispatcher-<flag> for every flag it does not decide itself.
//   - file.go: Render (ordered YAML, apiVersion config.herald.dev/v1alpha1, kind
//     DispatcherConfiguration) and Load (that form, or the flat map of flag names older
//     managers rendered; flags on the command line win over the file).
//   - testdata/defaults.yaml: Render(Default()), compared by TestDefaults_Golden; run
//     the test with UPDATE_DEFAULTS=true after changing a default on purpose.
//
// Adding a setting:
//
//  1. a field in the section of the package that needs it (types.go), with a json tag
//     in lowerCamelCase and a comment saying what it does and its default;
//  2. its default in Default (or in the section's SetDefaults when 0 means "unset");
//  3. its flag in BindFlags, named as a flag (kebab-case), defaulting to the field;
//  4. its check in Validate, if some values are wrong;
//  5. UPDATE_DEFAULTS=true go test ./dispatcher/config, and read the diff of
//     testdata/defaults.yaml;
//  6. use it in the package, which already receives the section.
//
// The manager passes it on with no more code (--dispatcher-<flag>); to offer it in the
// Helm chart, add the value to charts/herald/values.yaml and values.schema.json, the
// flag to templates/deployment.yaml, and the pair to chartSettings in
// charts/config_test.go, which checks the value's default and schema against this
// package.
package config
