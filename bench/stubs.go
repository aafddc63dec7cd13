package main

import "errors"

func checkIdle(e *env, r *result) error   { return errors.New("todo") }
func checkMemory(e *env, r *result) error { return errors.New("todo") }
func checkIngest(e *env, r *result) error { return errors.New("todo") }
func checkCrash(e *env, r *result) error  { return errors.New("todo") }
func checkReload(e *env, r *result) error { return errors.New("todo") }
func checkRetry(e *env, r *result) error  { return errors.New("todo") }
func checkMany(e *env, r *result) error   { return errors.New("todo") }
