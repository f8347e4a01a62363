target "default" {
  tags = [uper("x")]
}
