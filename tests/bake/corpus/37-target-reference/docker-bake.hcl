target "base" {
  tags = ["acme/base:1"]
  args = { V = "1" }
}
target "app" {
  tags = [for t in target.base.tags : "${t}-app"]
  args = { V = target.base.args.V }
}
group "default" {
  targets = ["base", "app"]
}
