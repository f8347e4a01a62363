# the object form of output / cache-from / cache-to / attest prints as the CSV form
target "default" {
  output     = [{ type = "image", name = "acme/app:1", push = true }, "type=local,dest=out"]
  cache-from = [{ type = "registry", ref = "acme/app:cache" }]
  cache-to   = [{ type = "local", dest = "/tmp/cache", mode = "max" }]
  attest     = [{ type = "provenance", mode = "max" }, { type = "sbom", disabled = null }]
}
