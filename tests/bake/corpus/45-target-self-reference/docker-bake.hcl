# a target may read its own and a partner's other attributes: not a cycle (buildx)
target "app" {
  args = { VERSION = "1.2" }
  tags = ["acme/app:${target.app.args.VERSION}", "acme/app:${target.sidecar.args.PARENT}"]
  labels = { "org.opencontainers.image.version" = target.app.args.VERSION }
}
target "sidecar" {
  args = { PARENT = "${target.app.args.VERSION}-side" }
  tags = [for t in target.app.tags : "${t}-sidecar"]
}
group "default" {
  targets = ["app", "sidecar"]
}
