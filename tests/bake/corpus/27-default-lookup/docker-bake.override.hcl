target "default" {
  tags = ["acme/app:from-override"]
  args = { B = "override" }
}
