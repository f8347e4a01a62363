# the smallest bake file: one target, selected by the default group
group "default" {
  targets = ["app"]
}

target "app" {
  context    = "."
  dockerfile = "Dockerfile"
  tags       = ["example/app:latest"]
  platforms  = ["linux/amd64", "linux/arm64"]
}
