package app

// CacheAllSecrets makes the dispatcher hold every Secret's content, as it did before it
// held only the referenced ones: the baseline of BenchmarkDispatcher_UnrelatedSecrets.
func CacheAllSecrets(o *Options) { o.cacheAllSecrets = true }
