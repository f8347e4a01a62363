group "default" { targets = ["app"] }
target "base" {
  dockerfile = "base.Dockerfile"
}
target "app" {
  contexts = {
    base  = "target:base"
    src   = "./src"
    alpine = "docker-image://alpine:3.20"
  }
}
